"""``redafit models list|info|install``: the face models redafit knows, what is installed, and installing them."""

from __future__ import annotations


import click
from redafit.io import jsonsafe

COMMANDS = []


@click.group("models")
@click.pass_context
def models(ctx):
    """List, inspect and install face models.

    \b
    Models live in $REDAFIT_MODEL_DIR (default: ~/.cache/redafit/models).
    Examples:
      redafit models list
      redafit models install ict                      # download from upstream (MIT)
      redafit models install ict --from ../shared/data/models
      redafit models install flame --from ~/Downloads/FLAME2020
      redafit models info ict --json
      redafit models info path/to/01_MorphableModel.mat
    """
    if ctx.invoked_subcommand != "list" and not ctx.resilient_parsing and not ctx.meta.get("redafit.help"):
        # list reads files only: no torch
        from redafit.cli import set_command_threads

        set_command_threads(ctx, (ctx.obj or {}).get("threads"))


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def list_cmd(as_json: bool):
    """Known and installed models, with their licence terms."""
    from redafit.model.store import KNOWN_MODELS, installed_models, model_dir

    installed = installed_models()
    rows = []
    for name, k in KNOWN_MODELS.items():
        rows.append({"name": name, "installed": name in installed,
                     "path": str(model_dir() / name) if name in installed else None, "title": k.title,
                     "licence": k.licence, "download": k.downloadable, "install": k.install_hint()})
    for name, info in installed.items():
        if name not in KNOWN_MODELS:
            rows.append({"name": name, "installed": True, "path": str(model_dir() / name),
                         "title": info.get("title", ""), "licence": info.get("licence_summary", ""),
                         "download": False, "install": ""})
    if as_json:
        click.echo(jsonsafe.dumps({"model_dir": str(model_dir()), "models": rows}))
        return
    click.echo(f"model folder: {model_dir()}")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "installed" if r["installed"] else "-"
        click.echo(f"{r['name']:<{width}}  {state:<9}  {r['title']}")
        click.echo(f"{'':<{width}}  {'':<9}  licence: {r['licence']}")
        if not r["installed"] and r["install"]:
            click.echo(f"{'':<{width}}  {'':<9}  install: {r['install']}")


@models.command("info")
@click.argument("model", metavar="NAME|PATH")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def info_cmd(model: str, as_json: bool):
    """Vertex, triangle and basis counts, units and licence of an installed model or a model file."""
    from redafit.model.store import load_model, resolve_model_path

    path = resolve_model_path(model)
    m = load_model(model)
    summary = m.summary()
    summary["path"] = str(path)
    summary["expression_names"] = list(m.expression_names)
    if as_json:
        click.echo(jsonsafe.dumps(summary))
        return
    for key in ("name", "path", "vertices", "triangles", "identity_modes", "expression_modes", "albedo_modes",
                "uv_coordinates", "landmarks_fixed", "contour_candidates", "units", "units_in_file",
                "expression_prior", "source", "licence"):
        val = summary[key]
        if isinstance(val, list):
            val = " / ".join(str(v) for v in val)
        click.echo(f"{key.replace('_', ' ') + ':':<19} {val}")


@models.command("install")
@click.argument("name")
@click.option("--from", "src", type=click.Path(path_type=str), default=None, metavar="DIR",
              help="Take the model files from this local folder instead of downloading.")
@click.option("--force", is_flag=True, help="Reinstall even when the model is already installed.")
def install_cmd(name: str, src: str | None, force: bool):
    """Install a known model (ict, sfm, bfm2009, bfm2017, flame) into the model folder.

    ict and sfm download from their public upstream sources (a pinned checksum is verified; an unpinned one is
    logged, REDAFIT_REQUIRE_CHECKSUM=1 refuses it); the Basel and FLAME models
    need a registration with their authors: download them there, then use --from DIR.
    """
    from redafit.model.store import install_model, is_installed

    already = is_installed(name) and not force
    path = install_model(name, src_dir=src, force=force)
    if already:
        click.echo(f"redafit: model '{name}' is already installed (use --force to reinstall)", err=True)
    click.echo(str(path.parent))


COMMANDS.append(models)
