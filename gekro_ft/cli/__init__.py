"""The ``gekro-ft`` command: a thin layer over the library, one module per command group.

Keep imports here light: ``gekro-ft --help`` must not import torch or transformers.
"""

from __future__ import annotations

import click

from gekro_ft import __version__
from gekro_ft.cli.batch import batch
from gekro_ft.cli.bench import bench
from gekro_ft.cli.cost import cost
from gekro_ft.cli.data import data
from gekro_ft.cli.doctor import doctor
from gekro_ft.cli.errors import GekroGroup
from gekro_ft.cli.eval import eval_
from gekro_ft.cli.export import export
from gekro_ft.cli.init import init
from gekro_ft.cli.models import models, promote
from gekro_ft.cli.pipeline import demo, pipeline
from gekro_ft.cli.recipe import recipe
from gekro_ft.cli.route import route
from gekro_ft.cli.serve import serve
from gekro_ft.cli.train import train


@click.group(cls=GekroGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="gekro-ft")
def main() -> None:
    """gekro-ft: format datasets, train QLoRA adapters, gate and serve them.

    \b
    Start with your data:
      gekro-ft data validate datasets/ticket-extraction/openai.jsonl --model smollm2-135m-instruct

    Set GEKRO_FT_DEBUG=1 to see tracebacks instead of one-line errors.
    """


main.add_command(init)
main.add_command(data)
main.add_command(doctor)
main.add_command(recipe)
main.add_command(train)
main.add_command(export)
main.add_command(eval_)
main.add_command(promote)
main.add_command(models)
main.add_command(serve)
main.add_command(bench)
main.add_command(cost)
main.add_command(route)
main.add_command(batch)
main.add_command(pipeline)
main.add_command(demo)
