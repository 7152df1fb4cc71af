"""Test-time augmentation: the passes each ensemble member makes of a batch, and how each is undone.

A pass transforms the model input (``N x C x h x w``), runs the member, and maps the
probabilities (``N x 1 x h x w``) back onto the input's pixel grid. The passes of a member
are, in this order: the plain pass, then one per angle of ``postprocess.tta_rotations``
(in-plane rotations about the image centre, in degrees, counter-clockwise as displayed);
each followed by its horizontally flipped twin where ``postprocess.tta_flip`` is on. So a
member makes ``(1 + len(tta_rotations)) x (2 if tta_flip else 1)`` passes
(:func:`passes_per_member`: the review flag scores each member's passes as a group).

Rotations stay within what training showed the model (``augment.affine.rotate``, 15 degrees
by default). They resample bilinearly with zeros outside the image: 0 is the normalised
background, as the training warps fill it. The corners a rotation moves in from outside
come back as probability 0 (background) after the inverse rotation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from monai.transforms import Rotate


@dataclass(frozen=True)
class Pass:
    """One test-time pass: ``degrees`` of rotation, then a horizontal flip where ``flip``."""

    degrees: float = 0.0
    flip: bool = False

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The model input of this pass (``N x C x h x w``)."""
        out = rotate(batch, self.degrees) if self.degrees else batch
        return out.flip(-1) if self.flip else out

    def inverse(self, probs: torch.Tensor) -> torch.Tensor:
        """This pass's output (``N x 1 x h x w``) back on the input's grid."""
        out = probs.flip(-1) if self.flip else probs
        return rotate(out, -self.degrees) if self.degrees else out


def tta_passes(flip: bool, rotations: Sequence[float] = ()) -> list[Pass]:
    """A member's passes: plain, then each rotation; each followed by its flipped twin where ``flip``."""
    out: list[Pass] = []
    for degrees in [0.0, *(float(r) for r in rotations)]:
        out.append(Pass(degrees))
        if flip:
            out.append(Pass(degrees, flip=True))
    return out


def passes_per_member(flip: bool, rotations: Sequence[float] = ()) -> int:
    """How many passes each member makes (see the module docstring)."""
    return len(tta_passes(flip, rotations))


def rotate(batch: torch.Tensor, degrees: float) -> torch.Tensor:
    """``N x C x H x W`` rotated by ``degrees`` about the image centre (counter-clockwise as displayed,
    rows downwards), bilinear, zeros outside, the size kept: MONAI's ``Rotate`` (in pixel space, so
    right for non-square images too) on every channel of every image at once. MONAI's positive angle
    turns the other way on screen, hence the sign."""
    n, c, h, w = batch.shape
    turn = Rotate(angle=-math.radians(degrees), keep_size=True, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = torch.as_tensor(turn(batch.float().reshape(n * c, h, w)))
    return out.reshape(n, c, h, w).to(batch.dtype)


def run_passes(
    infer: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, passes: Sequence[Pass]
) -> list[torch.Tensor]:
    """Each pass's probabilities (``N x 1 x h x w``) on the input's grid, in the order of ``passes``."""
    return [p.inverse(infer(p.forward(batch))) for p in passes]
