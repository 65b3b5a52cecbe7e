"""Trace a U-Net: every operation of the paper's Fig. 1, observed with forward hooks.

Chapter 1 (``notebooks/01_architecture.py``) builds its tables and its drawing of the U on these
traces, and its receptive windows on :func:`receptive_windows`:

* :func:`trace_shapes` runs one forward pass with forward hooks and records every operation of
  the paper's Fig. 1 (3x3 convolution + ReLU, 2x2 max-pool, 2x2 up-convolution, copy-and-crop,
  concatenation, 1x1 convolution) as a :class:`TraceRow` with its input and output shape, its
  parameters and its multiply-accumulates. The model may live on the ``meta`` device, which
  propagates shapes without computing. The ``OP_*`` constants name the operations.
* :func:`receptive_windows` measures, by back-propagation through a probe network with the
  same architecture, which input pixels can influence an output pixel, for every position of
  that pixel relative to the ``2**depth`` pooling grid.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from unet_core.model import UNet

Shape = tuple[int, int, int]  # (C, H, W) of one feature map, batch dimension dropped

# Operation names, as the legend of the paper's Fig. 1 calls them.
OP_INPUT = "input"
OP_CONV3 = "conv 3x3, ReLU"
OP_CONV3_BN = "conv 3x3, BN, ReLU"
OP_POOL = "max pool 2x2"
OP_DROPOUT = "dropout"
OP_UPCONV = "up-conv 2x2"
OP_CROP = "copy and crop"
OP_CONCAT = "concatenate"
OP_CONV1 = "conv 1x1"

PATHS: tuple[str, ...] = ("input", "contracting", "bottom", "expanding", "output")


@dataclass(frozen=True)
class TraceRow:
    """One operation of a forward pass, as recorded by :func:`trace_shapes`.

    Attributes:
        op: operation name (``OP_*`` constants of this module, e.g. ``"max pool 2x2"``).
        module: qualified name of the module that ran (``"down.0.0"``, ``"pool"``, ``"up.3"``);
            for a crop, the contracting block whose output was copied (``"down.0"``); empty
            for the input and for the concatenation.
        path: ``"input"``, ``"contracting"``, ``"bottom"``, ``"expanding"`` or ``"output"``.
        level: resolution level of the *output* map: 0 is full resolution, ``depth`` the
            bottom of the U (a max-pool from level 0 has level 1).
        in_shape: ``(C, H, W)`` of the operation's input (``None`` for the input and for the
            concatenation, whose two inputs are the preceding up-conv and crop rows).
        out_shape: ``(C, H, W)`` of its output.
        params: trainable parameters of the operation (a convolution's weights and bias, plus
            those of the BatchNorm that follows it, if any).
        macs: multiply-accumulates of the operation for one image (convolutions only; the
            cost of ReLU, pooling, BatchNorm and biases is negligible and not counted).
    """

    op: str
    module: str
    path: str
    level: int
    in_shape: Shape | None
    out_shape: Shape
    params: int = 0
    macs: int = 0

    @property
    def channels(self) -> int:
        """Channels of the output map."""
        return self.out_shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the output map."""
        return self.out_shape[1], self.out_shape[2]


def _shape(t: torch.Tensor) -> Shape:
    c, h, w = (int(s) for s in t.shape[1:])
    return c, h, w


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _batch_norm_params(model: UNet) -> dict[nn.Module, int]:
    """Parameters of every BatchNorm, credited to the convolution before it.

    One row per Fig. 1 arrow: "conv 3x3, BN, ReLU" counts the BatchNorm with its convolution.
    """
    extra: dict[nn.Module, int] = {}
    for block in [*model.down, *model.up_conv]:
        last_conv: nn.Module | None = None
        for layer in block:
            if isinstance(layer, nn.Conv2d):
                last_conv = layer
            elif isinstance(layer, nn.BatchNorm2d) and last_conv is not None:
                extra[last_conv] = extra.get(last_conv, 0) + _numel(layer)
    return extra


def _op_name(module: nn.Module, batch_norm: Collection[nn.Module]) -> str:
    """The Fig. 1 name of a traced module (``batch_norm``: convolutions followed by BN)."""
    if isinstance(module, nn.ConvTranspose2d):
        return OP_UPCONV
    if isinstance(module, nn.Conv2d):
        if module.kernel_size == (1, 1):
            return OP_CONV1
        return OP_CONV3_BN if module in batch_norm else OP_CONV3
    if isinstance(module, nn.MaxPool2d):
        return OP_POOL
    return OP_DROPOUT


def _macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-accumulates of a convolution for one image (0 for anything else)."""
    if isinstance(module, nn.ConvTranspose2d):  # every input pixel meets the whole kernel
        return int(inp.shape[2] * inp.shape[3] * module.weight.numel())
    if isinstance(module, nn.Conv2d):  # every output pixel meets the whole kernel
        return int(out.shape[2] * out.shape[3] * module.weight.numel() // module.groups)
    return 0


_TRACED = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.Dropout, nn.Dropout2d)


class _Tracer:
    """The hooks of :func:`trace_shapes` and the rows they record.

    Pre-hooks on the blocks tell where in the U the pass is (path and level); forward hooks on
    the traced modules append one row per operation; the contracting blocks' outputs are
    remembered so that the pre-hook of each expanding block can read off the copy-and-crop.
    """

    def __init__(self, model: UNet, input_shape: Shape) -> None:
        self.names = {m: name for name, m in model.named_modules()}
        self.extra = _batch_norm_params(model)
        self.rows: list[TraceRow] = [TraceRow(OP_INPUT, "", "input", 0, None, input_shape)]
        self.path, self.level = "contracting", 0
        self.skips: dict[int, Shape] = {}

    def register(self, model: UNet) -> list[RemovableHandle]:
        """Put every hook on ``model``; the caller removes the returned handles."""
        depth = model.depth
        handles = []
        for i, block in enumerate(model.down):
            path = "bottom" if i == depth else "contracting"
            handles.append(block.register_forward_pre_hook(self.enter(path, i)))
            handles.append(block.register_forward_hook(self.remember_skip(i)))
        for i, (up, block) in enumerate(zip(model.up, model.up_conv, strict=True)):
            level = depth - 1 - i
            handles.append(up.register_forward_pre_hook(self.enter("expanding", level)))
            handles.append(block.register_forward_pre_hook(self.crop_and_concat(level)))
        handles.append(model.head.register_forward_pre_hook(self.enter("output", 0)))
        for m in model.modules():
            if isinstance(m, _TRACED):
                handles.append(m.register_forward_hook(self.record))
        return handles

    def enter(self, path: str, level: int) -> Callable[..., None]:
        """Pre-hook: the pass enters ``path`` at ``level``."""
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self.path, self.level = path, level

        return hook

    def record(self, module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        """Forward hook: one row for a convolution, pooling, up-convolution or drop-out."""
        op = _op_name(module, self.extra)
        path, level = self.path, self.level
        if op == OP_POOL:  # a max-pool leads one level down the contracting path
            path, level = "contracting", level + 1
        params = _numel(module) + self.extra.get(module, 0)
        self.rows.append(TraceRow(op, self.names[module], path, level, _shape(args[0]),
                                  _shape(out), params, _macs(module, args[0], out)))

    def remember_skip(self, level: int) -> Callable[..., None]:
        """Forward hook: keep the shape of the contracting map of ``level``."""
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            self.skips[level] = _shape(out)

        return hook

    def crop_and_concat(self, level: int) -> Callable[..., None]:
        """Pre-hook of an expanding block: a crop row and a concatenation row."""
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            cat = _shape(args[0])
            up = self.rows[-1].out_shape  # the up-convolution that just ran
            skip = self.skips[level]
            if skip[0] + up[0] != cat[0] or up[1:] != cat[1:]:
                raise RuntimeError(f"unexpected concatenation {skip} + {up} -> {cat}")
            cropped = (skip[0], cat[1], cat[2])
            self.rows.append(TraceRow(OP_CROP, f"down.{level}", "expanding", level, skip,
                                      cropped))
            self.rows.append(TraceRow(OP_CONCAT, "", "expanding", level, None, cat))

        return hook


def _run_in_eval(model: nn.Module, x: torch.Tensor) -> None:
    """One forward pass in eval mode without gradients; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)


def trace_shapes(model: UNet, input_size: int | tuple[int, int] = 572) -> list[TraceRow]:
    """Run ``model`` once on an ``input_size`` image and record every Fig. 1 operation.

    Forward hooks on the model's convolutions, pooling, up-convolutions and drop-out record
    their input and output shapes; a pre-hook on every expanding block sees the concatenated
    map, from which the crop of the skip connection is read off. Nothing is re-derived: if the
    model's code changes, the trace changes with it.

    Args:
        model: the network. It runs in eval mode without gradients (its mode is restored
            afterwards), on the device of its parameters; a model built under
            ``torch.device("meta")`` gives the shapes without any arithmetic.
        input_size: the input side ``n`` (an ``n x n`` image) or ``(height, width)``. It must
            be a valid size for the model (e.g. 572 for the paper net).

    Returns:
        The operations in execution order, starting with an ``"input"`` row.

    Raises:
        ValueError: if ``input_size`` is not valid for the model (raised by the model).
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    param = next(model.parameters())
    x = torch.zeros(1, model.in_channels, h, w, dtype=param.dtype, device=param.device)
    tracer = _Tracer(model, _shape(x))
    handles = tracer.register(model)
    try:
        _run_in_eval(model, x)
    finally:
        for handle in handles:
            handle.remove()
    return tracer.rows



def receptive_windows(model: UNet) -> list[tuple[int, int]]:
    """Input window of an output pixel for each of its ``2**depth`` positions on the pool grid.

    Output pixel ``p`` of a valid U-Net sits at input pixel ``p + margin``; its window depends
    on ``p mod 2**depth`` because the max-pools group input pixels in aligned blocks. The
    window is *measured*: a probe network with the model's architecture (``depth``; widths do
    not matter) gets all-positive weights, so that every ReLU is active, and average instead
    of max pooling, so that every pixel of a pooling window passes gradient (a max-pool can
    pick any of its four inputs, depending on the data). The gradient of output pixel ``p``
    is then positive exactly on the pixels that can influence it.

    Args:
        model: any UNet; only its ``depth`` is used (padding does not move the window away from
            the borders, so the valid architecture is probed).

    Returns:
        For ``p = 0 .. 2**depth - 1``, ``(first, last)`` input offsets of the window relative to
        the pixel's own input position ``p + margin`` (the paper net: ``(-92, 95)`` for
        ``p = 0``). The window is ``last - first + 1`` pixels wide; the largest width equals
        :func:`~unet_core.model.receptive_field`.
    """
    period = 2**model.depth
    probe = UNet(1, 1, 1, model.depth, "valid").double()
    probe.pool = nn.AvgPool2d(kernel_size=2, stride=2)
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
    height = probe.valid_input_size(1)
    width = height
    while probe.output_size(width) < period:
        width = probe.valid_input_size(width + 1)
    margin = probe.margin
    x = torch.ones(period, 1, height, width, dtype=torch.float64, requires_grad=True)
    y = probe(x)  # (period, 1, H_out, W_out)
    pick = torch.zeros_like(y)
    for p in range(period):
        pick[p, 0, 0, p] = 1.0  # sample p asks about output pixel (0, p)
    (grad,) = torch.autograd.grad((y * pick).sum(), x)
    columns = grad.sum(dim=(1, 2))  # (period, width): influence of each input column
    windows = []
    for p in range(period):
        hit = (columns[p] > 0).nonzero().flatten()
        windows.append((int(hit.min()) - p - margin, int(hit.max()) - p - margin))
    return windows
