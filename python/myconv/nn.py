"""``myconv.Conv2d``: an ``nn.Module`` holding HWIO weights, for models ported from TF/Keras.

No ``from __future__ import annotations`` here: TorchScript must read the annotations.
"""

import math
from typing import List, Optional, Union

import torch

from myconv.ops import IntOrSeq, Padding, _explicit_padding, _spatial_pair


class Conv2d(torch.nn.Module):
    """Keras-style ``Conv2D`` on NHWC tensors with an HWIO ``weight`` ``[KH, KW, C/groups, O]``.

    Scriptable with ``torch.jit.script``; copy Keras kernels straight into ``weight``.

    Example:
        >>> layer = myconv.Conv2d(3, 64, kernel_size=7, strides=2, padding="SAME")
        >>> layer(torch.randn(1, 224, 224, 3)).shape
        torch.Size([1, 112, 112, 64])
    """

    stride: List[int]
    dilation: List[int]
    padding_mode: str
    explicit_padding: List[int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrSeq,
        strides: IntOrSeq = 1,
        padding: Padding = "SAME",
        dilations: IntOrSeq = 1,
        groups: int = 1,
        bias: bool = True,
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"myconv.Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                f"must be divisible by groups ({groups})"
            )
        kh, kw = _spatial_pair(kernel_size, "kernel_size")
        self.stride = _spatial_pair(strides, "strides")
        self.dilation = _spatial_pair(dilations, "dilations")
        if isinstance(padding, str):
            self.padding_mode = padding.upper()
            self.explicit_padding = []
        else:
            self.padding_mode = "EXPLICIT"
            self.explicit_padding = _explicit_padding(padding)
        factory = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.empty(kh, kw, in_channels // groups, out_channels, **factory))
        self.bias: Optional[torch.nn.Parameter] = (
            torch.nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), the scale torch.nn.Conv2d uses."""
        fan_in = self.weight.shape[0] * self.weight.shape[1] * self.weight.shape[2]
        bound = 1.0 / math.sqrt(fan_in)
        torch.nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The overload (str or int[4] padding) is picked from the argument's type.
        if self.padding_mode == "EXPLICIT":
            return torch.ops.myconv.conv2d(
                x, self.weight, self.stride, self.explicit_padding, self.dilation, self.bias
            )
        return torch.ops.myconv.conv2d(
            x, self.weight, self.stride, self.padding_mode, self.dilation, self.bias
        )

    def extra_repr(self) -> str:
        kh, kw, cg, o = self.weight.shape
        padding = self.padding_mode if self.padding_mode != "EXPLICIT" else self.explicit_padding
        return (
            f"kernel=({kh}, {kw}), in_per_group={cg}, out={o}, strides={self.stride}, "
            f"padding={padding}, dilations={self.dilation}, bias={self.bias is not None}"
        )
