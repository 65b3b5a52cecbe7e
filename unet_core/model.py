"""The U-Net of Ronneberger, Fischer & Brox (2015), Sec. 2 and Fig. 1.

Paper architecture (``padding="valid"``, the default):

* Contracting path: ``depth`` levels of two unpadded 3x3 convolutions, each followed by a ReLU,
  then a 2x2 max-pool with stride 2. The number of feature channels doubles at every
  down-sampling step (64, 128, 256, 512, then 1024 at the bottom).
* Drop-out layers "at the end of the contracting path" (Sec. 3.1), here on the output of the
  bottom block; ``dropout=0.0`` disables them. Drop-out is element-wise (``nn.Dropout``), as
  Caffe's ``Dropout`` layer that the paper used: every activation is zeroed independently,
  not whole feature maps (``nn.Dropout2d``).
* Expansive path: a 2x2 up-convolution (transposed convolution, stride 2) that halves the
  channels, concatenation with the *centre-cropped* feature map of the same level of the
  contracting path ("crop-and-copy"; cropping is needed because every unpadded convolution
  loses a border pixel), then two 3x3 convolutions + ReLU.
* A final 1x1 convolution maps the 64 channels to ``out_channels`` class scores.
* Weights are drawn from a Gaussian with standard deviation sqrt(2/N), N = fan-in (Sec. 3,
  "He-normal"); biases start at zero.

With ``UNet(1, 2, 64, 4, "valid")`` this is the paper network exactly: 23 convolutional layers
(18 3x3, 4 up-convolutions, one 1x1) and 31,030,658 parameters; a 572x572 input gives a
388x388 output (Fig. 1).

Deviations, all opt-in and off by default:

* ``padding="same"``: zero-padded 3x3 convolutions, so every level keeps its size and skip
  connections concatenate without cropping. Inputs must then be divisible by ``2**depth``.
  Zero padding changes the response near every border of every feature map; chapter 2 measures
  the effect.
* ``batch_norm=True`` inserts BatchNorm after each 3x3 convolution (before the ReLU); the
  paper predates batch normalisation.
* ``base_channels`` and ``depth`` generalise the paper's 64 and 4.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from torch import nn

from unet_core.validation import check_choice as _check_choice

Padding = Literal["valid", "same"]
PADDINGS: tuple[str, ...] = ("valid", "same")



class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (optional BatchNorm and) a ReLU (Fig. 1, blue)."""

    def __init__(self, in_ch: int, out_ch: int, padding: Padding, batch_norm: bool) -> None:
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for c_in in (in_ch, out_ch):
            layers.append(nn.Conv2d(c_in, out_ch, kernel_size=3, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre ``height x width`` window of an ``(N, C, H, W)`` tensor (crop-and-copy)."""
    _, _, h, w = x.shape
    if height > h or width > w:
        raise ValueError(f"cannot crop a {h}x{w} map to {height}x{width}")
    top, left = (h - height) // 2, (w - width) // 2
    return x[:, :, top : top + height, left : left + width]


def trace_sizes(n: int, depth: int, padding: str) -> list[int] | None:
    """Spatial size after every stage of a U-Net for input side ``n``, or ``None`` if invalid.

    Stages: for each level going down, the size after its double convolution (valid: 4 pixels
    fewer); then the size after each up-convolution + double convolution going up. ``n`` is
    invalid when a 2x2 max-pool would meet an odd size or a size drops below 1.
    """
    shrink = 4 if padding == "valid" else 0
    if n < 1:
        return None
    sizes: list[int] = []
    x = n
    for level in range(depth + 1):
        x -= shrink
        if x < 1:
            return None
        sizes.append(x)
        if level < depth:
            if x % 2:
                return None
            x //= 2
    for _ in range(depth):
        x = 2 * x - shrink
        if x < 1:
            return None
        sizes.append(x)
    return sizes


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015, Fig. 1) with the paper's valid padding or same padding.

    Args:
        in_channels: channels of the input image (1 for EM, 3 for RGB fundus photographs).
        out_channels: number of output maps (the paper uses 2 with a softmax).
        base_channels: feature channels of the first level (paper: 64); level ``i`` has
            ``base_channels * 2**i``.
        depth: number of 2x2 max-pool steps (paper: 4).
        padding: ``"valid"`` (paper, unpadded convolutions + crop-and-copy) or ``"same"``.
        batch_norm: BatchNorm after every 3x3 convolution (not in the paper).
        dropout: drop-out probability at the end of the contracting path (paper: used, rate not
            stated; 0.5 is Caffe's default and the released model's setting).

    ``forward`` takes ``(N, in_channels, H, W)`` and returns logits
    ``(N, out_channels, output_size(H), output_size(W))``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int = 64,
        depth: int = 4,
        padding: Padding = "valid",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_choice("padding", padding, PADDINGS)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("base_channels", base_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be a non-negative integer, got {depth!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.base_channels, self.depth = base_channels, depth
        self.padding: Padding = padding
        self.batch_norm, self.dropout_p = batch_norm, dropout

        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        c_prev = in_channels
        for w in widths:
            self.down.append(DoubleConv(c_prev, w, padding, batch_norm))
            c_prev = w
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # element-wise
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w in reversed(widths[:-1]):
            # 2x2 up-convolution halving the channels (2w -> w), then concat (w + w) -> w.
            self.up.append(nn.ConvTranspose2d(2 * w, w, kernel_size=2, stride=2))
            self.up_conv.append(DoubleConv(2 * w, w, padding, batch_norm))
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)
        self.reset_parameters()

    # -- initialisation ------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """He-normal init: N(0, sqrt(2/N)) with N the fan-in of a unit (paper Sec. 3)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                # fan-in of one output unit: in_channels * kh * kw. For ConvTranspose2d with
                # stride == kernel size every output pixel sees exactly in_channels inputs,
                # one per input channel, so N = in_channels (weight is (in, out, kh, kw)).
                if isinstance(m, nn.ConvTranspose2d):
                    fan_in = m.in_channels
                else:
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                nn.init.normal_(m.weight, mean=0.0, std=(2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- size arithmetic -----------------------------------------------------------------------
    @property
    def shrink(self) -> int:
        """Pixels lost per double convolution (4 for valid 3x3 convs, 0 for same)."""
        return 4 if self.padding == "valid" else 0

    def trace(self, n: int) -> list[int] | None:
        """Spatial size after every stage for input size ``n`` (see :func:`trace_sizes`)."""
        return trace_sizes(n, self.depth, self.padding)

    def is_valid_size(self, n: int) -> bool:
        """True when an ``n``-pixel side passes through the network without fractional pooling."""
        return self.trace(n) is not None

    def output_size(self, n: int) -> int:
        """Output side for an input side ``n`` (572 -> 388 for the paper net)."""
        self.check_size("input size", n)
        trace = self.trace(n)
        assert trace is not None
        return trace[-1]

    def valid_input_size(self, n: int) -> int:
        """Smallest valid input side >= ``n`` (``n`` itself when it is valid)."""
        m = max(int(n), 1)
        while not self.is_valid_size(m):
            m += 1
        return m

    def _previous_valid(self, n: int) -> int | None:
        m = n
        while m >= 1 and not self.is_valid_size(m):
            m -= 1
        return m if m >= 1 else None

    @property
    def margin(self) -> int:
        """Context border lost on each side, ``(in - out) / 2`` (92 for the paper net)."""
        n = self.valid_input_size(1)
        return (n - self.output_size(n)) // 2

    def check_size(self, what: str, n: int) -> None:
        """Raise ``ValueError`` (:meth:`size_message`) unless ``n`` is a valid input side."""
        if not self.is_valid_size(int(n)):
            raise ValueError(self.size_message(what, int(n)))

    def size_message(self, what: str, n: int) -> str:
        """Why ``n`` is not a valid side for ``what``, with the nearest valid sizes."""
        below, above = self._previous_valid(n - 1), self.valid_input_size(n + 1)
        rule = (
            f"divisible by 2**depth = {2 ** self.depth}"
            if self.padding == "same"
            else "one that leaves an even size before every 2x2 max-pool "
            f"(of the form 2**{self.depth} * k + {self.valid_input_size(1) % 2**self.depth})"
        )
        near = f"{below} or {above}" if below is not None else f"{above}"
        return (
            f"{what} {n} is not valid for UNet(depth={self.depth}, padding='{self.padding}'): "
            f"it must be {rule}. Nearest valid sizes: {near}."
        )

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected an (N, {self.in_channels}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        for axis, n in (("height", x.shape[2]), ("width", x.shape[3])):
            self.check_size(f"input {axis}", int(n))

        skips: list[torch.Tensor] = []
        for level, block in enumerate(self.down):
            x = block(x)  # (N, base*2**level, H_l - shrink, W_l - shrink)
            if level < self.depth:
                skips.append(x)
                x = self.pool(x)  # (N, C, H/2, W/2)
        x = self.dropout(x)  # end of the contracting path (paper Sec. 3.1)
        for up, block, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = up(x)  # (N, C/2, 2H, 2W)
            skip = center_crop(skip, x.shape[2], x.shape[3])  # crop-and-copy (no-op if "same")
            x = block(torch.cat([skip, x], dim=1))  # (N, C/2, 2H - shrink, 2W - shrink)
        return self.head(x)  # (N, out_channels, H_out, W_out)

    def extra_repr(self) -> str:
        return (
            f"padding={self.padding!r}, depth={self.depth}, base_channels={self.base_channels}, "
            f"batch_norm={self.batch_norm}, dropout={self.dropout_p}"
        )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_conv_layers(model: nn.Module) -> int:
    """Convolutional layers (3x3, up-convolutions and 1x1), as counted in the paper."""
    return sum(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in model.modules())


def receptive_field(model: UNet) -> int:
    """Largest input window that influences one output pixel, in pixels along one axis.

    Computed exactly by propagating index intervals backwards through every path of the
    network (the bottom path and every skip connection). Because 2x2 pooling and 2x2
    up-convolution are not shift-invariant by one pixel, the window's size depends on the
    output pixel's position modulo ``2**depth``; the maximum over those phases is returned
    (204 for the paper net, whose smallest window is 188).
    Padding does not change the receptive field away from borders, so valid arithmetic is used.
    """
    shrink = 4  # two valid 3x3 convolutions: output i sees inputs i .. i + 4
    depth = model.depth
    # Crop offsets of the skip connections (constant for every valid input size).
    smallest = next(n for n in itertools.count(1) if trace_sizes(n, depth, "valid") is not None)
    trace = trace_sizes(smallest, depth, "valid")
    assert trace is not None
    enc, dec = trace[: depth + 1], trace[depth + 1 :]
    offset = {k: (enc[k] - dec[depth - 1 - k]) // 2 for k in range(depth)}

    def encoder(level: int, a: int, b: int) -> tuple[int, int]:
        a, b = a, b + shrink  # double conv
        if level == 0:
            return a, b
        return encoder(level - 1, 2 * a, 2 * b + 1)  # 2x2 max-pool

    def decoder(level: int, a: int, b: int) -> tuple[int, int]:
        a, b = a, b + shrink  # double conv over the concatenated map
        skip = encoder(level, a + offset[level], b + offset[level])  # crop-and-copy
        lo, hi = a // 2, b // 2  # 2x2 up-convolution, stride 2
        below = encoder(depth, lo, hi) if level == depth - 1 else decoder(level + 1, lo, hi)
        return min(skip[0], below[0]), max(skip[1], below[1])

    if depth == 0:
        return 1 + shrink
    widths = [hi - lo + 1 for lo, hi in (decoder(0, p, p) for p in range(2**depth))]
    return max(widths)
