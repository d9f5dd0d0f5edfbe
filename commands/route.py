"""`quark route TEXT --model ROUTER`: which specialist a turn goes to, and how sure the router is."""

from typing import Annotated

import typer

from quark.commands._cli import Cli, quark_command
from quark.commands._options import model_option


def route(cli: Cli, text: Annotated[str, typer.Argument(help="The user's turn.")],
          model: Annotated[str, model_option("Router name (a folder under models/ made by quark finetune router).")]
          ) -> dict:
    """Show the router's decision for a turn: the label, the probability per label, whether it
    fell back to general (top probability below the router's threshold), and the adapter of the
    router's base model that answers it (`NAME:auto` on quark serve, the chat's routing).

    Example:

        quark finetune router --model tiny --name tiny-router

        quark route "draw a cat on the moon" --model tiny-router --json
    """
    from quark.agent.router import Router
    from quark.agent.router_train import load_router
    from quark.agent.routing import adapter_for
    from quark.modelfolder.adapters import side_by_side_adapters

    router = load_router(cli.home, model)
    decision = router.route(text)
    base = Router.read_meta(cli.home.model_dir(model))["base"]
    adapter = adapter_for(decision.label, side_by_side_adapters(cli.home.model_dir(base))[0])
    note = f" (fell back: top {decision.predicted} {decision.confidence:.2f} < {router.threshold:.2f})" \
        if decision.fell_back else f" ({decision.confidence:.2f})"
    cli.print(f"[bold]{decision.label}[/]{note} → {f'adapter {adapter}' if adapter else f'the base {base}'}")
    for label, score in sorted(decision.scores.items(), key=lambda kv: -kv[1]):
        cli.print(f"  {label:<16} {score:.3f}")
    return {"text": text, "router": model, "threshold": router.threshold, **decision.to_dict(), "base": base,
            "adapter": adapter}


def register(root: typer.Typer) -> None:
    quark_command(root, "route")(route)
