"""OpenAI's released ViT CLIP models: the one table of their names, short names, architectures and
weight files. Plain data; :mod:`clip.loading` downloads the files, :mod:`fusion.config` builds the
video backbones on these architectures."""

from dataclasses import dataclass

from clip.model import CLIPConfig


@dataclass(frozen=True)
class ReleasedModel:
    name: str          # OpenAI's name, as clip.load takes it: ViT-B/16
    short_name: str    # the short form: b16
    config: CLIPConfig  # the architecture, at the resolution the weights were trained at
    sha256: str        # of the file; also the directory of its URL
    filename: str      # the file's name on OpenAI's server: ViT-B-16.pt


RELEASED = {model.name: model for model in (
    ReleasedModel("ViT-B/32", "b32", CLIPConfig(512, 224, 12, 768, 32),
                  "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", "ViT-B-32.pt"),
    ReleasedModel("ViT-B/16", "b16", CLIPConfig(512, 224, 12, 768, 16),
                  "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", "ViT-B-16.pt"),
    ReleasedModel("ViT-L/14", "l14", CLIPConfig(768, 224, 24, 1024, 14, transformer_width=768, transformer_heads=12),
                  "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", "ViT-L-14.pt"),
    ReleasedModel("ViT-L/14@336px", "l14-336",
                  CLIPConfig(768, 336, 24, 1024, 14, transformer_width=768, transformer_heads=12),
                  "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", "ViT-L-14-336px.pt"),
)}


def released_model(name: str) -> ReleasedModel | None:
    """The released model ``name`` (OpenAI's name or the short one) names, or None."""
    return RELEASED.get(name) or next((m for m in RELEASED.values() if m.short_name == name), None)
