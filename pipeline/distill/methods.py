"""Method registry: a method is prediction heads plus a loss over (student states, a Batch from the cache).

Every method has forward(states, mask, batch) -> (loss, logs), a `student` attribute naming the architecture
it trains, OPTIONS (defaults; unknown keys are errors) and `needs(options)` saying what its batches must carry
(teacher targets, domain labels, cluster ids, transcript embeddings, whole utterances). The training loop
knows nothing else about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.distill.adversarial import DomainClassifier, dann_lambda, domain_adversarial_loss
from pipeline.distill.codebook import codebook_features
from pipeline.distill.correlation import AutoBalance, correlation_loss
from pipeline.distill.data import DOMAIN_SCHEMES, Batch
from pipeline.distill.ensemble import aggregate, fit_projection, project
from pipeline.distill.kd import dkd_loss, kd_loss, posterior_logits
from pipeline.distill.losses import l1_cosine, masked_mean, normalize_targets
from pipeline.distill.pad import GRANULARITIES, GranularityMixture, global_alignment, local_alignment


@dataclass(frozen=True)
class Needs:
    """What a method's batches carry. layers: 'relative' (depths 1/3, 2/3, 1 of every teacher) or 'codebook'
    (the codebook's layer); domains: a data.DOMAIN_SCHEMES name; clean_prob: share of inputs drawn from the
    clean view; clusters: codebook size k (0 = none); text_units: transcript granularities."""

    targets: bool = True
    layers: str = "relative"
    domains: str | None = None
    clean_prob: float = 0.0
    clusters: int = 0
    text: bool = False
    text_units: tuple[str, ...] = ()
    phrase_words: int = 3
    whole_utterances: bool = False
    target_sample: int = 0  # frames of cached targets the method fits something on (0 = none)


@dataclass
class MethodContext:
    """What a method is built from: widths per teacher and target layer, and the fitted extras."""

    student_dim: int
    target_dims: list[list[int]] = field(default_factory=list)
    teachers: list[str] = field(default_factory=list)
    layers: list[list[int]] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    codebook: torch.Tensor | None = None
    text_dim: int = 0
    target_sample: list[list[torch.Tensor]] | None = None


class PredictionHead(nn.Module):
    """Maps the student's last hidden state to one teacher layer: a small MLP, or one linear layer
    (s3prl's DistilHuBERT default, which learns faster in short runs)."""

    def __init__(self, dim_in: int, dim_out: int, kind: str = "mlp") -> None:
        super().__init__()
        if kind == "linear":
            self.net = nn.Sequential(nn.Linear(dim_in, dim_out))
        else:
            self.net = nn.Sequential(nn.Linear(dim_in, dim_in), nn.GELU(), nn.Linear(dim_in, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Method(nn.Module):
    """Base of every method: option checking, default needs, no metadata or extra files."""

    student: ClassVar[str] = "transformer"
    text_teacher: ClassVar[bool] = False  # trains against a `kind: text` teacher
    many_teachers: ClassVar[bool] = False  # `teacher:` is a list of at least two audio teachers
    OPTIONS: ClassVar[dict[str, Any]] = {}
    CHOICES: ClassVar[dict[str, tuple]] = {}

    @classmethod
    def resolve_options(cls, options: dict[str, Any] | None) -> dict[str, Any]:
        """Options with defaults filled; unknown keys and values outside CHOICES raise ValueError."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; allowed: {sorted(cls.OPTIONS)}")
        out = {**cls.OPTIONS, **options}
        for key, allowed in cls.CHOICES.items():
            values = out[key] if isinstance(out[key], list) else [out[key]]
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"option {key}={out[key]!r} is not one of {list(allowed)}")
        return out

    @classmethod
    def needs(cls, options: dict[str, Any] | None = None) -> Needs:
        return Needs()

    def __init__(self, ctx: MethodContext, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.options = self.resolve_options(options)

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor,
                batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """Extra entries for the student's config.json."""
        return {}

    def artifacts(self) -> dict[str, dict[str, torch.Tensor]]:
        """Extra safetensors files (name -> tensors) written beside the checkpoint."""
        return {}


class DistilHuBERT(Method):
    """One head per target layer on the last student layer; L1 + cosine loss summed over heads
    (arXiv 2110.01900). With input and target views that differ this is cross-distortion mapping
    (arXiv 2210.07978): setup 1 = distorted input / clean targets, setup 2 = distinct distorted copies."""

    OPTIONS = {"cos_weight": 1.0, "head": "mlp"}
    CHOICES = {"head": ("mlp", "linear")}

    def __init__(self, ctx: MethodContext, options: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, options)
        self.cos_weight = float(self.options["cos_weight"])
        self.heads = nn.ModuleList(PredictionHead(ctx.student_dim, d, self.options["head"])
                                   for d in ctx.target_dims[0])

    def head_loss(self, i: int, pred: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, parts = l1_cosine(pred, target, mask, self.cos_weight)
        return loss, {"cos": parts["cos"]}

    def distill(self, states: list[torch.Tensor], mask: torch.Tensor,
                targets: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum over heads of head_loss(head(last state), normalised target)."""
        total, logs = 0.0, {}
        for i, (head, target) in enumerate(zip(self.heads, targets, strict=True)):
            loss, parts = self.head_loss(i, head(states[-1]), normalize_targets(target), mask)
            total = total + loss
            logs[f"loss_{i}"] = loss.item()
            logs.update({f"{k}_{i}": v for k, v in parts.items()})
        return total, logs

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor,
                batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.distill(states, mask, batch.targets[0])


class DomainAdversarial(DistilHuBERT):
    """Cross-distortion mapping plus a domain classifier on the student's last layer through a gradient
    reversal layer (arXiv 2210.07978): the student minimises L_distill - lambda * L_domain.

    Unpublished choices (ours): classifier = masked mean pool -> Linear(D, hidden) -> GELU -> Linear;
    lambda ramps from 0 to options.lambda with the DANN schedule 2 / (1 + exp(-10 p)) - 1 (ramp: true);
    domain labels from each input copy's view-plan recipe: clean_vs_distorted (inputs drawn from the clean
    view with probability clean_prob) or noise_type (the recipe's noise type)."""

    OPTIONS = {**DistilHuBERT.OPTIONS, "lambda": 0.1, "hidden": 256, "domain_labels": "clean_vs_distorted",
               "clean_prob": 0.5, "ramp": True}
    CHOICES = {**DistilHuBERT.CHOICES, "domain_labels": DOMAIN_SCHEMES}

    @classmethod
    def needs(cls, options: dict[str, Any] | None = None) -> Needs:
        o = cls.resolve_options(options)
        clean = float(o["clean_prob"]) if o["domain_labels"] == "clean_vs_distorted" else 0.0
        return Needs(domains=o["domain_labels"], clean_prob=clean)

    def __init__(self, ctx: MethodContext, options: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, options)
        if len(ctx.domains) < 2:
            raise ValueError(f"domain-adversarial training needs at least 2 domains, got {ctx.domains}")
        self.classifier = DomainClassifier(ctx.student_dim, len(ctx.domains), int(self.options["hidden"]))

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor,
                batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        loss, logs = self.distill(states, mask, batch.targets[0])
        top = float(self.options["lambda"])
        lambd = dann_lambda(batch.progress, top) if self.options["ramp"] else top
        ce, dlogs = domain_adversarial_loss(self.classifier, states[-1], mask, batch.domains, lambd)
        return loss + ce, {**logs, **dlogs, "lambda": lambd, "distill": loss.item()}

    def metadata(self) -> dict[str, Any]:
        return {"domains": list(self.ctx.domains)}


class CorrelationMetric(DistilHuBERT):
    """Correlation-metric distillation (arXiv 2312.12153): cross-correlation to identity plus student
    self-correlation minimisation, optionally with the L1 + cosine term; options.weighting "fixed"
    uses the reference weights, "auto" our AutoBalance heuristic (pipeline/distill/correlation.py)."""

    OPTIONS = {**DistilHuBERT.OPTIONS, "weighting": "fixed", "l1_cos": True, "pool_frames": 150,
               "auto_ratio": 0.1}
    CHOICES = {**DistilHuBERT.CHOICES, "weighting": ("fixed", "auto")}

    def __init__(self, ctx: MethodContext, options: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, options)
        self.weighting = self.options["weighting"]
        self.with_l1_cos = bool(self.options["l1_cos"])
        self.balance = nn.ModuleList(AutoBalance(float(self.options["auto_ratio"])) for _ in ctx.target_dims[0])

    def head_loss(self, i: int, pred: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, logs = correlation_loss(pred, target, mask, pool_frames=int(self.options["pool_frames"]),
                                      weighting=self.weighting, state=self.balance[i])
        l1c, parts = l1_cosine(pred, target, mask, self.cos_weight)
        if self.with_l1_cos:
            loss = loss + l1c
        return loss, {**logs, "cos": parts["cos"]}


class Ensemble(Method):
    """Ensemble distillation from several teachers (arXiv 2302.12757): layerwise average or concatenation of
    the teachers' targets with one head per layer, or one set of heads per teacher ("heads").

    Teachers of unequal depth are mapped by relative depth (the loop gives every teacher its states at depths
    1/3, 2/3, 1, by whether its state 0 is an input: train.target_layers); unequal widths by a fixed PCA
    projection fitted once on cached train frames (the layer-normalised targets of each teacher and layer,
    projected to proj_dim, default the narrowest width) before averaging. concat and heads need no projection
    and use none unless proj_dim is set. Each teacher's target is layer-normalised (after projection) before
    aggregation so no teacher dominates. The layer map and projection are recorded in config.json["ensemble"]
    and projection.safetensors.
    """

    many_teachers = True
    OPTIONS = {"aggregate": "average", "proj_dim": 0, "cos_weight": 1.0, "fit_frames": 10000, "head": "mlp"}
    CHOICES = {"aggregate": ("average", "concat", "heads"), "head": ("mlp", "linear")}

    @classmethod
    def needs(cls, options: dict[str, Any] | None = None) -> Needs:
        o = cls.resolve_options(options)
        projects = o["aggregate"] == "average" or int(o["proj_dim"]) > 0
        return Needs(target_sample=int(o["fit_frames"]) if projects else 0)

    def __init__(self, ctx: MethodContext, options: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, options)
        if len(ctx.target_dims) < 2:
            raise ValueError(f"ensemble distillation needs at least two teachers, got {ctx.teachers}")
        depths = {len(d) for d in ctx.target_dims}
        if len(depths) != 1:
            raise ValueError(f"teachers give different numbers of target layers {ctx.target_dims}")
        self.mode = self.options["aggregate"]
        self.cos_weight = float(self.options["cos_weight"])
        self.n_layers = depths.pop()
        widths = [w for per in ctx.target_dims for w in per]
        self.proj_dim = int(self.options["proj_dim"]) or (min(widths) if self.mode == "average" else 0)
        self.explained: list[list[float]] = []
        self.fit_frames = 0
        if self.proj_dim:
            if ctx.target_sample is None:
                raise ValueError("ensemble projection needs a sample of cached targets (MethodContext.target_sample)")
            self.fit_frames = int(ctx.target_sample[0][0].shape[0])
            for k, per in enumerate(ctx.target_sample):
                ratios = []
                for j, sample in enumerate(per):
                    x = normalize_targets(sample)
                    mean, comp = fit_projection(x, self.proj_dim)
                    self.register_buffer(f"proj_mean_{k}_{j}", mean)
                    self.register_buffer(f"proj_comp_{k}_{j}", comp)
                    kept = project(x, mean, comp).double().var(0).sum() / x.double().var(0).sum()
                    ratios.append(round(float(kept), 4))  # share of the variance the projection keeps
                self.explained.append(ratios)
        self.ctx = replace(ctx, target_sample=None)  # the sample is not needed once the projection is fitted
        dims = [[self.proj_dim or w for w in per] for per in ctx.target_dims]
        if self.mode == "heads":
            outs = [d for per in dims for d in per]
        elif self.mode == "concat":
            outs = [sum(per[j] for per in dims) for j in range(self.n_layers)]
        else:
            outs = [self.proj_dim] * self.n_layers
        self.heads = nn.ModuleList(PredictionHead(ctx.student_dim, d, self.options["head"]) for d in outs)

    def teacher_target(self, k: int, j: int, target: torch.Tensor) -> torch.Tensor:
        """Teacher k's layer-j target: layer-normalised, projected (when projecting) and normalised again."""
        t = normalize_targets(target)
        if self.proj_dim:
            t = normalize_targets(project(t, getattr(self, f"proj_mean_{k}_{j}"), getattr(self, f"proj_comp_{k}_{j}")))
        return t

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor,
                batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        per_teacher = [[self.teacher_target(k, j, t) for j, t in enumerate(layers)]
                       for k, layers in enumerate(batch.targets)]
        if self.mode == "heads":
            pairs = [(f"{k}_{j}", t) for k, layers in enumerate(per_teacher) for j, t in enumerate(layers)]
        else:
            pairs = [(str(j), normalize_targets(aggregate([layers[j] for layers in per_teacher], self.mode)))
                     for j in range(self.n_layers)]
        total, logs = 0.0, {}
        for head, (name, target) in zip(self.heads, pairs, strict=True):
            loss, parts = l1_cosine(head(states[-1]), target, mask, self.cos_weight)
            total = total + loss
            logs[f"loss_{name}"], logs[f"cos_{name}"] = loss.item(), parts["cos"]
        return total, logs

    def metadata(self) -> dict[str, Any]:
        ctx = self.ctx
        projection = None
        if self.proj_dim:
            projection = {"dim": self.proj_dim, "method": "PCA of layer-normalised cached train frames",
                          "fit_frames": self.fit_frames, "file": "projection.safetensors",
                          "explained_variance": dict(zip(ctx.teachers, self.explained, strict=True))}
        return {"ensemble": {"aggregate": self.mode, "teachers": list(ctx.teachers),
                             "layers": dict(zip(ctx.teachers, ctx.layers, strict=True)),
                             "widths": {t: d[0] for t, d in zip(ctx.teachers, ctx.target_dims, strict=True)},
                             "projection": projection}}

    def artifacts(self) -> dict[str, dict[str, torch.Tensor]]:
        if not self.proj_dim:
            return {}
        tensors = {}
        for k, teacher in enumerate(self.ctx.teachers):
            for j, layer in enumerate(self.ctx.layers[k]):
                tensors[f"{teacher}.layer{layer}.mean"] = getattr(self, f"proj_mean_{k}_{j}")
                tensors[f"{teacher}.layer{layer}.components"] = getattr(self, f"proj_comp_{k}_{j}")
        return {"projection.safetensors": tensors}


class ClusterKD(Method):
    """LSTM student, classic KD on teacher posteriors over a k-means codebook (arXiv 2309.09920):
    tau^2 KL(p_T || p_S) + ce * cross-entropy on the cluster ids. p_T = softmax(-||h - mu_c||^2 / T) of the
    unit-normalised teacher features (codebook.codebook_features), p_S from a linear classifier on the last
    student layer (dropped for downstream use). T is ours: 0.1 gives logits 20 h.mu + const for unit vectors;
    on Whisper base's cached final layer (k = 100) the teacher distribution then has a mean entropy of 2.8 nats
    (of 4.6) and top-1 probability 0.31, where T = 0.2 is nearly uniform (4.0 nats, 0.10) and T = 0.05 nearly
    one-hot (1.3 nats, 0.62)."""

    student = "lstm"
    OPTIONS = {"k": 100, "tau": 1.0, "ce": 1.0, "posterior_temperature": 0.1, "form": "distance"}
    CHOICES = {"form": ("distance", "cosine")}

    @classmethod
    def needs(cls, options: dict[str, Any] | None = None) -> Needs:
        return Needs(layers="codebook", clusters=int(cls.resolve_options(options)["k"]))

    def __init__(self, ctx: MethodContext, options: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, options)
        if ctx.codebook is None:
            raise ValueError("cluster KD needs a codebook (MethodContext.codebook)")
        if ctx.codebook.shape[0] != int(self.options["k"]):
            raise ValueError(f"codebook has {ctx.codebook.shape[0]} clusters but options.k = {self.options['k']}")
        self.register_buffer("codebook", ctx.codebook.float().clone())
        self.classifier = nn.Linear(ctx.student_dim, ctx.codebook.shape[0])
        self.tau, self.ce = float(self.options["tau"]), float(self.options["ce"])

    def kd_term(self, logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return kd_loss(logits, teacher_logits, self.tau, mask, from_logits=True)

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor,
                batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        ids = batch.clusters
        valid = mask & (ids >= 0)
        teacher = posterior_logits(codebook_features(batch.targets[0][0]), self.codebook,
                                   float(self.options["posterior_temperature"]), self.options["form"])
        logits = self.classifier(states[-1])
        kd = self.kd_term(logits, teacher, valid)
        ce = masked_mean(F.cross_entropy(logits.float().transpose(1, 2), ids.clamp_min(0), reduction="none"), valid)
        acc = masked_mean((logits.argmax(-1) == ids).float(), valid)
        cos = masked_mean(F.cosine_similarity(logits.softmax(-1), teacher.softmax(-1), dim=-1), valid)
        return kd + self.ce * ce, {"kd": kd.item(), "ce": ce.item(), "acc": acc.item(), "cos": cos.item()}


class DecoupledKD(ClusterKD):
    """LSTM student with decoupled KD (arXiv 2203.08679 applied as in 2309.09920): tau^2 (alpha TCKD +
    beta NCKD) + ce * CE on the cluster ids. DKD's target class is the teacher posterior's argmax, as DKD
    defines it: with the distance form that is the frame's k-means id, with the cosine form it may not be."""

    OPTIONS = {**ClusterKD.OPTIONS, "alpha": 1.0, "beta": 4.0}

    def kd_term(self, logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return dkd_loss(logits, teacher_logits, teacher_logits.argmax(-1), float(self.options["alpha"]),
                        float(self.options["beta"]), self.tau, mask, from_logits=True)


class _TextStudent(Method):
    """Shared by the text-aligned students: a frame projection into the text space and masked mean pooling."""

    text_teacher = True
    needs_columns = ("text",)  # manifest column it trains on (checked by pipeline.config)

    def __init__(self, ctx: MethodContext, options: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, options)
        if not ctx.text_dim:
            raise ValueError("a text-aligned student needs the text teacher's width (MethodContext.text_dim)")
        self.proj = PredictionHead(ctx.student_dim, ctx.text_dim)

    def speech(self, states: list[torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.proj(states[-1])
        m = mask.to(frames.dtype)[..., None]
        return frames, (frames * m).sum(1) / m.sum(1).clamp_min(1.0)


class TextAligned(_TextStudent):
    """PAD-style text-aligned student (documented stand-in for arXiv 2303.03600, see pad.py): global InfoNCE
    between pooled speech and sentence embeddings + local prior-guided alignment of text units (token / word /
    phrase of `phrase_words` words) to speech frames, granularities mixed with learned weights."""

    OPTIONS = {"granularities": list(GRANULARITIES), "phrase_words": 3, "global_weight": 1.0,
               "local_weight": 1.0, "temperature": 0.07, "attention_temperature": 0.1, "prior_width": 0.5,
               "entropy_weight": 0.1}
    CHOICES = {"granularities": GRANULARITIES}

    @classmethod
    def needs(cls, options: dict[str, Any] | None = None) -> Needs:
        o = cls.resolve_options(options)
        return Needs(targets=False, text=True, text_units=tuple(o["granularities"]),
                     phrase_words=int(o["phrase_words"]), whole_utterances=True)

    def __init__(self, ctx: MethodContext, options: dict[str, Any] | None = None) -> None:
        super().__init__(ctx, options)
        self.granularities = tuple(self.options["granularities"])
        self.mixture = GranularityMixture(self.granularities, float(self.options["entropy_weight"]))

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor,
                batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        frames, pooled = self.speech(states, mask)
        glob = global_alignment(pooled, batch.text.sentence, float(o["temperature"]))
        local = [local_alignment(frames, mask, *batch.text.units[g], width=float(o["prior_width"]),
                                 temperature=float(o["attention_temperature"])) for g in self.granularities]
        loss = float(o["global_weight"]) * glob + float(o["local_weight"]) * self.mixture(local)
        weights = self.mixture.weights().tolist()
        cos = F.cosine_similarity(pooled, batch.text.sentence.to(pooled.dtype), dim=-1).mean()
        logs = {"global": glob.item(), "cos": cos.item(),
                **{f"local_{g}": v.item() for g, v in zip(self.granularities, local, strict=True)},
                **{f"weight_{g}": w for g, w in zip(self.granularities, weights, strict=True)}}
        return loss, logs

    def metadata(self) -> dict[str, Any]:
        return {"granularity_weights": dict(zip(self.granularities, self.mixture.weights().tolist(), strict=True))}


class TextMetric(_TextStudent):
    """Plain metric distillation from the text teacher (the PAD baseline): MSE (squared Euclidean distance)
    or cosine distance between the pooled, projected speech embedding and the sentence embedding."""

    OPTIONS = {"loss": "mse"}
    CHOICES = {"loss": ("mse", "cosine")}

    @classmethod
    def needs(cls, options: dict[str, Any] | None = None) -> Needs:
        return Needs(targets=False, text=True, whole_utterances=True)

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor,
                batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        _, pooled = self.speech(states, mask)
        target = batch.text.sentence.to(pooled.dtype)
        cos = F.cosine_similarity(pooled, target, dim=-1)
        if self.options["loss"] == "mse":
            loss = ((pooled - target) ** 2).sum(-1).mean()
        else:
            loss = (1.0 - cos).mean()
        return loss, {"cos": cos.mean().item()}


METHODS: dict[str, type[Method]] = {
    "distilhubert": DistilHuBERT,
    "dann": DomainAdversarial,
    "correlation": CorrelationMetric,
    "ensemble": Ensemble,
    "kd": ClusterKD,
    "dkd": DecoupledKD,
    "pad": TextAligned,
    "text_metric": TextMetric,
}


def get_method(name: str) -> type[Method]:
    """The registered method class; unknown names raise with the known ones."""
    if name not in METHODS:
        raise KeyError(f"unknown distillation method '{name}' (known: {sorted(METHODS)})")
    return METHODS[name]


def build_method(name: str, ctx: MethodContext, options: dict[str, Any] | None = None) -> Method:
    """Instantiate a registered method (its heads and loss)."""
    return get_method(name)(ctx, options)
