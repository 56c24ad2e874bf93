from __future__ import annotations

from fastapi import APIRouter

from logpx.estimators import DEFAULT_SPEC, bits_reading
from logpx.families import Classifier, LatentVariableModel

from ..deps import RegistryDep, SettingsDep
from ..registry import ModelEntry
from ..schemas import ModelDetail, ModelList, ModelSummary, SkippedFile, problem_responses

router = APIRouter(prefix="/v1/models", tags=["models"])

DEFAULTS = {
    "estimator": {"name": DEFAULT_SPEC.name, "k": DEFAULT_SPEC.k},
    "seed": 0,
    "scale": "unit",
    "diagnostics": True,
}


def _capabilities(e: ModelEntry) -> list[str]:
    """By the model's type, never its family's name."""
    if e.checkpoint is None:
        return []
    model = e.checkpoint.model
    if isinstance(model, LatentVariableModel):
        return ["evidence", "compare", "bdmc", "jobs", *(["posterior"] if model.latent_dim == 2 else [])]
    return ["predict"] if isinstance(model, Classifier) else []


def _summary(e: ModelEntry) -> ModelSummary:
    meta = e.checkpoint.metadata if e.checkpoint else {}
    return ModelSummary(
        name=e.name,
        family=e.family,
        status=e.status,
        reason=e.reason,
        device=e.device,
        capabilities=_capabilities(e),
        dataset=str(dataset["name"])
        if isinstance(dataset := meta.get("dataset"), dict) and "name" in dataset
        else None,
        domain=e.checkpoint.domain if e.checkpoint else None,
    )


@router.get("", response_model=ModelList, responses=problem_responses(401))
async def list_models(registry: RegistryDep, settings: SettingsDep) -> ModelList:
    models = [_summary(e) for e in registry.entries()]
    default = next((m.name for m in models if m.name == settings.default_model and m.status == "ready"), None)
    return ModelList(
        models=models,
        default_model=default,
        skipped=[SkippedFile(file=f, reason=r) for f, r in registry.skipped],
    )


@router.get("/{name}", response_model=ModelDetail, responses=problem_responses(401, 404, 422))
async def get_model(name: str, registry: RegistryDep) -> ModelDetail:
    e = registry.get(name)
    meta = e.checkpoint.metadata if e.checkpoint else None
    binarize = e.checkpoint.binarize if e.checkpoint else None
    model = e.checkpoint.model if e.checkpoint else None
    bits = (
        bits_reading(e.checkpoint.domain, model.input_dim, model.log_jacobian())
        if e.checkpoint is not None and isinstance(model, LatentVariableModel)
        else None
    )
    return ModelDetail(
        **_summary(e).model_dump(),
        sha256=e.checkpoint.sha256 if e.checkpoint else None,
        input_shape=list(e.checkpoint.model.input_shape) if e.checkpoint else None,
        likelihood=meta["likelihood"] if meta else None,
        bits_per_dim=bits,
        metadata=meta,
        defaults={**DEFAULTS, "binarize": binarize},
    )
