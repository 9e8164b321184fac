"""What every route family's request and response models build on.

Values are strict: a boolean is JSON ``true`` / ``false`` (not ``"yes"``, ``"true"`` or ``1``), a
number is a finite JSON number, int or float (not a boolean, a string or NaN); unknown fields
are rejected (422 naming the field).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dtseg.config import StrictModel

#: A finite JSON number, int or float (strict: never a boolean or a string).
Number = Annotated[float, Field(allow_inf_nan=False)]


class Strict(StrictModel):
    """Base of every request model: unknown fields (``StrictModel``) and loose types (``"yes"``
    for a boolean, ``true`` or ``"3"`` for a number) are 422s naming the field."""

    model_config = ConfigDict(strict=True)


class ImageInput(Strict):
    """``{"type": "base64" | "url", "value": ...}`` (Roboflow's ``InferenceRequestImage``).

    A base64 value may carry a ``data:image/...;base64,`` prefix. A base64-typed value that is
    an ``http(s)://`` URL is fetched as a URL (Roboflow's own published example does this).
    Roboflow's ``numpy`` type (a pickle) is refused: unpickling request data runs code.
    """

    type: Literal["base64", "url"] = Field(examples=["base64"])
    value: str = Field(min_length=1, description="base64 image bytes, or an http(s) URL")


class RleMask(BaseModel):
    size: list[int]
    counts: str


class ErrorResponse(BaseModel):
    message: str
    field: str | None = None
    code: str | None = None
