"""``gekro-ft export``: an adapter as a merged model or GGUF."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, out


@click.command()
@click.argument("adapter", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--merged", type=click.Path(file_okay=False, path_type=Path),
              help="Write the base model with the LoRA merged in (safetensors) here.")
@click.option("--gguf", type=click.Path(file_okay=False, path_type=Path),
              help="Write GGUF here (needs unsloth and a CUDA GPU).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32",
              show_default=True, help="Dtype of the merged weights.")
@click.option("--quantization", default="q4_k_m", show_default=True, help="GGUF quantization method.")
def export(adapter: Path, merged: Path | None, gguf: Path | None, dtype: str, quantization: str) -> None:
    """Export ADAPTER (a directory from `gekro-ft train`) for engines that cannot load LoRA.

    \b
    Example:
      gekro-ft export work/train/smollm2-135m-cpu/adapter --merged work/merged
    """
    from gekro_ft.train.export import export_gguf, export_merged

    if not merged and not gguf:
        raise click.UsageError("give --merged DIR and/or --gguf DIR")
    if merged:
        with err.status("merging"):
            out.print(f"merged model: {export_merged(adapter, merged, dtype)}")
    if gguf:
        with err.status("exporting GGUF"):
            out.print(f"GGUF: {export_gguf(adapter, gguf, quantization)}")
