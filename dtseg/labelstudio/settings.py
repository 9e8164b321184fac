"""The ``server.labelstudio:`` section of a server config."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import Field

from dtseg.config import StrictModel

URL_ENV, TOKEN_ENV = "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"


class LabelStudioConfig(StrictModel):
    """How ``/labelstudio`` reads task images and which pipeline pre-annotates.

    ```yaml
    server:
      labelstudio:
        url: http://127.0.0.1:8080      # or $LABEL_STUDIO_URL; default: the hostname /setup sends
        api_token: ...                  # or $LABEL_STUDIO_API_KEY; default: the token /setup sends
        local_dirs: {"/data/local-files/?d=": /srv/images}   # URL prefix -> folder, read from disk
        pipeline: default               # configs_dir config run by "retrieve predictions"
        negative_labels: [negative]     # KeyPointLabels labels that mark background points
    ```
    """

    url: str | None = Field(None, description="Label Studio's address: task URLs starting with '/' (uploads, "
                                              "local files) are fetched from it with the API token")
    api_token: str | None = Field(None, description="Label Studio API token (legacy token)")
    local_dirs: dict[str, str] = Field(default_factory=dict, description="task URL prefix -> local folder")
    pipeline: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$",
                                 description="the pipeline config (file stem in configs_dir) of pre-annotation")
    negative_labels: list[str] = Field(default_factory=lambda: ["negative", "background"],
                                       description="keypoint labels that mark a background point")

    def effective_url(self) -> str | None:
        return self.url or os.environ.get(URL_ENV) or None

    def effective_token(self) -> str | None:
        return self.api_token or os.environ.get(TOKEN_ENV) or None


@dataclass(frozen=True)
class Connection:
    """What ``/setup`` told the backend about one project's Label Studio."""

    hostname: str | None = None
    access_token: str | None = None
