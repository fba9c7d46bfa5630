"""Reference PyTorch FID Inception-v3 (the network of pytorch-fid / TF's 2015-12-05 graph), torch only.

Same topology as pytorch-fid's `fid_inception_v3()`: torchvision's Inception3 stem, InceptionB (Mixed_6a) and
InceptionD (Mixed_7a), with the FID variants FIDInceptionA (5b-5d), FIDInceptionC (6b-6e), FIDInceptionE_1 (7b,
average pool with count_include_pad=False) and FIDInceptionE_2 (7c, max pool). Every conv is BasicConv2d
(conv without bias, BatchNorm eps 1e-3, ReLU). Output: pool3 (global average, 2048-d) and fc logits (1008).

`width` divides every channel count: width=1 is the real network (state-dict keys as pt_inception-2015-12-05);
the committed test fixture uses a narrower twin (same kernels, paddings, strides, pools) so it stays small.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def avg3(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin, pool, w):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64 // w, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48 // w, 1)
        self.branch5x5_2 = BasicConv2d(48 // w, 64 // w, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64 // w, 1)
        self.branch3x3dbl_2 = BasicConv2d(64 // w, 96 // w, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96 // w, 96 // w, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(avg3(x))
        return torch.cat([a, b, c, d], 1)


class InceptionB(nn.Module):
    def __init__(self, cin, w):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384 // w, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64 // w, 1)
        self.branch3x3dbl_2 = BasicConv2d(64 // w, 96 // w, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96 // w, 96 // w, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin, c7, w):
        super().__init__()
        o = 192 // w
        self.branch1x1 = BasicConv2d(cin, o, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, o, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, o, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, o, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = x
        for m in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
            c = m(c)
        return torch.cat([a, b, c, self.branch_pool(avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin, w):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192 // w, 1)
        self.branch3x3_2 = BasicConv2d(192 // w, 320 // w, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192 // w, 1)
        self.branch7x7x3_2 = BasicConv2d(192 // w, 192 // w, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192 // w, 192 // w, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192 // w, 192 // w, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin, w, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320 // w, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384 // w, 1)
        self.branch3x3_2a = BasicConv2d(384 // w, 384 // w, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384 // w, 384 // w, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448 // w, 1)
        self.branch3x3dbl_2 = BasicConv2d(448 // w, 384 // w, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384 // w, 384 // w, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384 // w, 384 // w, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192 // w, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
        p = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avg3(x)
        return torch.cat([a, b, c, self.branch_pool(p)], 1)


class FIDInceptionV3(nn.Module):
    def __init__(self, width: int = 1, num_classes: int = 1008):
        super().__init__()
        w = width
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32 // w, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32 // w, 32 // w, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32 // w, 64 // w, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64 // w, 80 // w, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80 // w, 192 // w, 3)
        a_out = lambda pool: (64 + 64 + 96) // w + pool  # noqa: E731
        self.Mixed_5b = InceptionA(192 // w, 32 // w, w)
        self.Mixed_5c = InceptionA(a_out(32 // w), 64 // w, w)
        self.Mixed_5d = InceptionA(a_out(64 // w), 64 // w, w)
        c5 = a_out(64 // w)
        self.Mixed_6a = InceptionB(c5, w)
        c6 = (384 + 96) // w + c5
        self.Mixed_6b = InceptionC(c6, 128 // w, w)
        c6 = 4 * (192 // w)
        self.Mixed_6c = InceptionC(c6, 160 // w, w)
        self.Mixed_6d = InceptionC(c6, 160 // w, w)
        self.Mixed_6e = InceptionC(c6, 192 // w, w)
        self.Mixed_7a = InceptionD(c6, w)
        c7 = (320 + 192) // w + c6
        self.Mixed_7b = InceptionE(c7, w, max_pool=False)
        c7 = (320 + 4 * 384 + 192) // w
        self.Mixed_7c = InceptionE(c7, w, max_pool=True)
        self.fc = nn.Linear(c7, num_classes)
        self.pool_dim = c7

    def forward(self, images, size: int = 299):
        """images in [0, 1], NCHW -> (pool3 features, logits), as pytorch-fid (resize_input, normalize_input)."""
        x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        pool = x.mean(dim=(2, 3))
        return pool, self.fc(pool)
