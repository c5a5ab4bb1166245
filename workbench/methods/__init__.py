"""The methods. Each module follows one small contract:

- ``SUPERVISION``: the weak-label kinds it learns from (``dense``, ``tags``, ``points``, ...);
- ``Config``: a frozen dataclass of its knobs, with small CPU defaults;
- ``build(num_classes, config, backbone) -> nn.Module``;
- ``training_step(model, batch, config) -> dict`` with a scalar ``"loss"`` (other entries are logged);
  ``batch`` holds ``image``, ``label``, ``tags``, ``index`` and ``progress`` (0..1 through training);
- ``predict(model, images) -> (B, C, H, W)`` class scores.

``METHODS`` maps CLI names to modules; it is the only name lookup (the CLI's edge).
"""

from workbench.methods import cam, partial_ce, simformer, single_stage, spml, supervised, transfer

METHODS = {
    "supervised": supervised,
    "partial_ce": partial_ce,
    "single_stage": single_stage,
    "spml": spml,
    "cam": cam,
    "simformer": simformer,
    "transfer": transfer,
}
