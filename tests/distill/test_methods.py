"""Method registry entries against independent computations: DANN gradients, ensemble aggregation, cluster KD/DKD,
text units, PAD and metric losses; options checking; the batch extras (domains, cluster ids, transcripts)."""

from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pipeline.distill.codebook import codebook_features, nearest
from pipeline.distill.data import Batch, ClusterIds, DomainLabels, Pick, TextBatch, TextTargets
from pipeline.distill.losses import l1_cosine, normalize_targets
from pipeline.distill.methods import METHODS, MethodContext, Needs, build_method, get_method
from pipeline.distill.pad import global_alignment, local_alignment, text_units


def _batch(targets=None, **kw) -> Batch:
    return Batch(torch.zeros(2, 1), torch.ones(2), targets=targets or [], **kw)


def _mask(b: int, t: int, lengths: list[int]) -> torch.Tensor:
    return torch.arange(t)[None] < torch.tensor(lengths)[:, None]


# ---------------------------------------------------------------- registry and options


def test_registry_names_are_the_contract():
    assert set(METHODS) == {"distilhubert", "dann", "correlation", "ensemble", "kd", "dkd", "pad", "text_metric"}
    with pytest.raises(KeyError, match="text_metric"):
        get_method("fitnets")
    assert get_method("kd").student == get_method("dkd").student == "lstm"
    assert get_method("ensemble").many_teachers and get_method("pad").text_teacher


def test_options_unknown_keys_and_choices_raise():
    assert get_method("correlation").resolve_options({"weighting": "auto"})["weighting"] == "auto"
    with pytest.raises(ValueError, match="weightng"):
        get_method("correlation").resolve_options({"weightng": "auto"})
    with pytest.raises(ValueError, match="average"):
        get_method("ensemble").resolve_options({"aggregate": "median"})
    with pytest.raises(ValueError, match="sentence"):
        get_method("pad").resolve_options({"granularities": ["token", "sentence"]})


def test_needs_follow_options():
    assert get_method("distilhubert").needs({}) == Needs()
    dann = get_method("dann")
    assert dann.needs({}).domains == "clean_vs_distorted" and dann.needs({}).clean_prob == 0.5
    assert dann.needs({"domain_labels": "noise_type"}).clean_prob == 0.0
    assert get_method("kd").needs({"k": 50}) == Needs(layers="codebook", clusters=50)
    assert get_method("ensemble").needs({"aggregate": "heads"}).target_sample == 0
    assert get_method("ensemble").needs({}).target_sample > 0
    pad = get_method("pad").needs({"granularities": ["word"]})
    assert not pad.targets and pad.text and pad.text_units == ("word",) and pad.whole_utterances


# ---------------------------------------------------------------- DANN


def test_dann_student_gradient_is_distill_minus_lambda_domain():
    """d total / d states = d L_distill / d states - lambda * d L_domain / d states (gradient reversal)."""
    torch.manual_seed(0)
    ctx = MethodContext(8, [[6, 6]], domains=["clean", "distorted"])
    lam = 0.37
    method = build_method("dann", ctx, {"lambda": lam, "ramp": False, "hidden": 5})
    states = [torch.randn(3, 7, 8, requires_grad=True)]
    mask = _mask(3, 7, [7, 5, 3])
    targets = [[torch.randn(3, 7, 6), torch.randn(3, 7, 6)]]
    domains = torch.tensor([0, 1, 1])
    total, logs = method(states, mask, _batch(targets, domains=domains))
    (g_total,) = torch.autograd.grad(total, states[0])
    distill, _ = method.distill(states, mask, targets[0])
    (g_distill,) = torch.autograd.grad(distill, states[0])
    m = mask.float()[..., None]
    ce = F.cross_entropy(method.classifier.net((states[0] * m).sum(1) / m.sum(1)), domains)
    (g_ce,) = torch.autograd.grad(ce, states[0])
    torch.testing.assert_close(g_total, g_distill - lam * g_ce, atol=1e-6, rtol=1e-5)
    assert total.item() == pytest.approx(distill.item() + ce.item(), rel=1e-5)
    assert logs["lambda"] == lam and logs["domain_ce"] == pytest.approx(ce.item(), rel=1e-5)


def test_dann_lambda_ramps_with_progress():
    ctx = MethodContext(4, [[3]], domains=["a", "b"])
    method = build_method("dann", ctx, {"lambda": 0.5})
    states, mask = [torch.randn(2, 3, 4)], torch.ones(2, 3, dtype=torch.bool)
    lams = [method(states, mask, _batch([[torch.randn(2, 3, 3)]], domains=torch.tensor([0, 1]), progress=p))[1]
            ["lambda"] for p in (0.0, 0.2, 1.0)]
    assert lams[0] == 0.0 and 0 < lams[1] < lams[2] and lams[2] == pytest.approx(0.5, rel=1e-4)


def test_domain_labels_from_view_plans():
    def plan(rows):
        return pd.DataFrame(rows, columns=["key", "recipe"])

    undistorted = {"family": "indomain", "noise": None, "reverb": None, "pitch": None, "bandreject": None}
    plans = {"clean": plan([["a@0", "{}"], ["b@0", "{}"]]),
             "indomain": plan([["a@0", json.dumps({"family": "indomain", "noise": {"type": "pink"}})],
                               ["a@1", json.dumps({"family": "indomain", "noise": {"type": "babble"}})],
                               ["b@0", json.dumps(undistorted)],  # drew "none" twice: the clean audio
                               ["b@1", json.dumps({**undistorted, "pitch": 2.0})]])}
    cvd = DomainLabels(plans, "clean_vs_distorted")
    assert cvd.classes == ["clean", "distorted"]
    picks = [Pick("a", "clean", "a@0", None, 0, 1), Pick("a", "indomain", "a@1", None, 0, 1),
             Pick("b", "indomain", "b@0", None, 0, 1), Pick("b", "indomain", "b@1", None, 0, 1)]
    assert [cvd.item(p) for p in picks] == [0, 1, 0, 1]
    noise = DomainLabels(plans, "noise_type")
    assert noise.classes == ["babble", "clean", "no_noise", "pink"]
    assert noise.item(Pick("a", "indomain", "a@0", None, 0, 1)) == 3
    assert [noise.classes[noise.item(p)] for p in picks] == ["clean", "babble", "clean", "no_noise"]
    with pytest.raises(ValueError, match="one class only"):
        DomainLabels({"clean": plans["clean"]}, "clean_vs_distorted")
    with pytest.raises(KeyError, match="view plan"):
        cvd.item(Pick("z", "clean", "z@0", None, 0, 1))


# ---------------------------------------------------------------- ensemble


def _sample(teachers: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    return [[t.reshape(-1, t.shape[-1])] for t in teachers]


def test_ensemble_average_of_identical_teachers_equals_one_teacher():
    """Two copies of one teacher (same PCA, same targets): the averaged target is that teacher's target."""
    torch.manual_seed(1)
    fit = torch.randn(400, 10) @ torch.randn(10, 10)
    ctx = MethodContext(12, [[10], [10]], teachers=["a", "b"], layers=[[2], [2]],
                        target_sample=[[fit], [fit.clone()]])
    method = build_method("ensemble", ctx, {"proj_dim": 4})
    target = torch.randn(2, 5, 10) * 3 + 1
    states, mask = [torch.randn(2, 5, 12)], _mask(2, 5, [5, 3])
    total, _ = method(states, mask, _batch([[target], [target.clone()]]))
    one = method.teacher_target(0, 0, target)
    assert one.shape == (2, 5, 4)
    want, _ = l1_cosine(method.heads[0](states[-1]), normalize_targets(one), mask)
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    # and the projection is PCA of the layer-normalised sample: orthonormal components
    comp = method.proj_comp_0_0
    torch.testing.assert_close(comp.T @ comp, torch.eye(4), atol=1e-5, rtol=0)


def test_ensemble_concat_and_heads_against_explicit_sums():
    torch.manual_seed(2)
    ctx = MethodContext(8, [[6, 6], [4, 4]], teachers=["a", "b"], layers=[[1, 2], [1, 3]])
    ta, tb = [torch.randn(2, 5, 6) for _ in range(2)], [torch.randn(2, 5, 4) for _ in range(2)]
    states, mask = [torch.randn(2, 5, 8)], _mask(2, 5, [5, 4])
    concat = build_method("ensemble", ctx, {"aggregate": "concat"})
    assert [h.net[-1].out_features for h in concat.heads] == [10, 10]
    total, _ = concat(states, mask, _batch([ta, tb]))
    want = sum(l1_cosine(concat.heads[j](states[-1]),
                         normalize_targets(torch.cat([normalize_targets(ta[j]), normalize_targets(tb[j])], -1)),
                         mask)[0].item() for j in range(2))
    assert total.item() == pytest.approx(want, rel=1e-6)
    heads = build_method("ensemble", ctx, {"aggregate": "heads"})
    assert [h.net[-1].out_features for h in heads.heads] == [6, 6, 4, 4]
    total, logs = heads(states, mask, _batch([ta, tb]))
    want = sum(l1_cosine(heads.heads[i](states[-1]), normalize_targets(t), mask)[0].item()
               for i, t in enumerate([*ta, *tb]))
    assert total.item() == pytest.approx(want, rel=1e-6) and set(logs) >= {"loss_0_0", "loss_1_1"}


def test_ensemble_refuses_one_teacher_and_unequal_depths():
    with pytest.raises(ValueError, match="two teachers"):
        build_method("ensemble", MethodContext(8, [[6]], teachers=["a"]), {"aggregate": "heads"})
    with pytest.raises(ValueError, match="numbers of target layers"):
        build_method("ensemble", MethodContext(8, [[6], [4, 4]], teachers=["a", "b"]), {"aggregate": "heads"})


# ---------------------------------------------------------------- cluster KD / DKD


def _np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("name", ["kd", "dkd"])
def test_cluster_kd_loss_against_numpy(name):
    torch.manual_seed(3)
    k, d, t_post, tau = 5, 6, 0.2, 2.0
    codebook = codebook_features(torch.randn(k, d))
    ctx = MethodContext(8, [[d]], layers=[[2]], codebook=codebook)
    opts = {"k": k, "tau": tau, "ce": 0.5, "posterior_temperature": t_post, "alpha": 1.0, "beta": 3.0}
    if name == "kd":
        opts = {o: v for o, v in opts.items() if o not in ("alpha", "beta")}
    method = build_method(name, ctx, opts)
    feats = torch.randn(2, 4, d) * 3
    mask = _mask(2, 4, [4, 2])
    ids = nearest(codebook_features(feats).reshape(-1, d), codebook).reshape(2, 4)
    ids[1, 2:] = -1  # padding
    states = [torch.randn(2, 4, 8)]
    loss, logs = method(states, mask, _batch([[feats]], clusters=ids))
    # independent: numpy posteriors from the unit-normalised features, then the KD / DKD definitions per frame
    h = feats.numpy().astype(np.float64)
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5) / np.sqrt(d)
    mu = codebook.numpy().astype(np.float64)
    teacher_logits = -((h[..., None, :] - mu) ** 2).sum(-1) / t_post
    student_logits = method.classifier(states[0]).detach().numpy().astype(np.float64)
    terms, ces = [], []
    for b in range(2):
        for t in range(4):
            if not mask[b, t]:
                continue
            pt, ps = _np_softmax(teacher_logits[b, t] / tau), _np_softmax(student_logits[b, t] / tau)
            c = int(ids[b, t])
            assert c == int(np.argmax(teacher_logits[b, t]))  # the stored id is the posterior's argmax
            if name == "kd":
                terms.append(tau ** 2 * np.sum(pt * np.log(pt / ps)))
            else:
                bt, bs = np.array([pt[c], 1 - pt[c]]), np.array([ps[c], 1 - ps[c]])
                rest = [j for j in range(k) if j != c]
                ht, hs = pt[rest] / pt[rest].sum(), ps[rest] / ps[rest].sum()
                terms.append(tau ** 2 * (1.0 * np.sum(bt * np.log(bt / bs)) + 3.0 * np.sum(ht * np.log(ht / hs))))
            ces.append(-np.log(_np_softmax(student_logits[b, t])[c]))
    want = np.mean(terms) + 0.5 * np.mean(ces)
    assert loss.item() == pytest.approx(want, rel=1e-4)
    assert logs["ce"] == pytest.approx(np.mean(ces), rel=1e-4)


def test_dkd_target_is_the_cosine_posteriors_argmax_not_the_stored_id():
    """With form "cosine" the k-means id (nearest centroid) can differ from the teacher's top class; DKD's
    target class is the teacher's top class (arXiv 2203.08679), the cross-entropy stays on the stored ids."""
    torch.manual_seed(5)
    k, d, t_post, tau, alpha, beta = 6, 8, 0.1, 1.5, 0.7, 4.0
    # centroids of unequal norms: the nearest one (distance) is often not the best aligned one (cosine)
    codebook = codebook_features(torch.randn(k, d)) * torch.tensor([0.1, 0.3, 0.6, 1.0, 1.5, 2.5])[:, None]
    method = build_method("dkd", MethodContext(8, [[d]], layers=[[2]], codebook=codebook),
                          {"k": k, "tau": tau, "ce": 0.5, "posterior_temperature": t_post, "alpha": alpha,
                           "beta": beta, "form": "cosine"})
    feats = torch.randn(3, 5, d)
    mask = _mask(3, 5, [5, 4, 2])
    ids = nearest(codebook_features(feats).reshape(-1, d), codebook).reshape(3, 5)
    ids[~mask] = -1
    states = [torch.randn(3, 5, 8)]
    loss, logs = method(states, mask, _batch([[feats]], clusters=ids))
    # independent: numpy unit-normalised features, cosine logits, DKD written out with the argmax as target
    h = feats.numpy().astype(np.float64)
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5) / np.sqrt(d)
    mu = codebook.numpy().astype(np.float64)
    cos = (h / np.linalg.norm(h, axis=-1, keepdims=True)) @ (mu / np.linalg.norm(mu, axis=-1, keepdims=True)).T
    student_logits = method.classifier(states[0]).detach().numpy().astype(np.float64)
    terms, ces, differ = [], [], 0
    for b in range(3):
        for t in range(5):
            if not mask[b, t]:
                continue
            pt, ps = _np_softmax(cos[b, t] / t_post / tau), _np_softmax(student_logits[b, t] / tau)
            c = int(np.argmax(cos[b, t]))
            differ += c != int(ids[b, t])
            bt, bs = np.array([pt[c], 1 - pt[c]]), np.array([ps[c], 1 - ps[c]])
            rest = [j for j in range(k) if j != c]
            ht, hs = pt[rest] / pt[rest].sum(), ps[rest] / ps[rest].sum()
            terms.append(tau ** 2 * (alpha * np.sum(bt * np.log(bt / bs)) + beta * np.sum(ht * np.log(ht / hs))))
            ces.append(-np.log(_np_softmax(student_logits[b, t])[int(ids[b, t])]))
    assert differ >= 3  # the case this test is about: stored ids and the teacher's top class disagree
    assert loss.item() == pytest.approx(np.mean(terms) + 0.5 * np.mean(ces), rel=1e-4)
    assert logs["ce"] == pytest.approx(np.mean(ces), rel=1e-4)


def test_cluster_kd_refuses_a_codebook_of_another_size():
    ctx = MethodContext(8, [[6]], codebook=torch.randn(7, 6))
    with pytest.raises(ValueError, match="options.k"):
        build_method("kd", ctx, {"k": 5})


def test_cluster_ids_are_cropped_like_the_targets():
    book = types.SimpleNamespace(ids=lambda key: np.arange(100, 120) if key == "u@1" else None)
    extra = ClusterIds(book)
    items = [extra.item(Pick("u", "clean", "u@0", "u@1", 3, 5)), extra.item(Pick("u", "clean", "u@0", "u@1", 0, 2))]
    out = extra.collate(items, 5)
    assert out.tolist() == [[103, 104, 105, 106, 107], [100, 101, -1, -1, -1]]


# ---------------------------------------------------------------- text units, PAD, text metric


def _emb(tokens, spans, words):
    return types.SimpleNamespace(tokens=np.asarray(tokens, np.float32), spans=np.asarray(spans),
                                 words=np.asarray(words), sentence=np.ones(2, np.float32) / np.sqrt(2))


def test_text_units_by_hand():
    # "turn on lights" with "lights" split into two pieces: light + ##s
    emb = _emb([[1, 0], [0, 1], [2, 2], [4, 0]], [[0, 4], [5, 7], [8, 13], [13, 14]], [0, 1, 2, 2])
    units, shares = text_units(emb, "token")
    np.testing.assert_allclose(units, emb.tokens)
    np.testing.assert_allclose(shares, np.array([4, 2, 5, 1]) / 12)
    units, shares = text_units(emb, "word")
    np.testing.assert_allclose(units, [[1, 0], [0, 1], [3, 1]])
    np.testing.assert_allclose(shares, np.array([4, 2, 6]) / 12)
    units, shares = text_units(emb, "phrase", phrase_words=2)
    np.testing.assert_allclose(units, [[0.5, 0.5], [3, 1]])
    np.testing.assert_allclose(shares, np.array([6, 6]) / 12)
    with pytest.raises(ValueError, match="granularity"):
        text_units(emb, "sentence")


def test_text_targets_collate_pads_units():
    store = {"a": _emb([[1, 0], [0, 1]], [[0, 2], [3, 4]], [0, 1]), "b": _emb([[1, 1]], [[0, 3]], [0])}
    extra = TextTargets(types.SimpleNamespace(get=store.__getitem__), ("token", "word"), 3)
    items = [extra.item(Pick(u, "clean", f"{u}@0", None, 0, 1)) for u in ("a", "b")]
    batch = extra.collate(items, 0)
    emb, mask, shares = batch.units["token"]
    assert emb.shape == (2, 2, 2) and mask.tolist() == [[True, True], [True, False]]
    np.testing.assert_allclose(shares.numpy(), [[2 / 3, 1 / 3], [1.0, 0.0]], rtol=1e-6)
    assert batch.sentence.shape == (2, 2)


def _text_batch(b=3, u=4, dt=6):
    g = torch.Generator().manual_seed(5)
    sentence = F.normalize(torch.randn(b, dt, generator=g), dim=-1)
    units = torch.randn(b, u, dt, generator=g)
    umask = _mask(b, u, [4, 2, 3])
    shares = umask.float() / umask.float().sum(1, keepdim=True)
    wmask = umask[:, :2]
    wshares = wmask.float() / wmask.float().sum(1, keepdim=True)
    return TextBatch(sentence, {"token": (units, umask, shares), "word": (units[:, :2], wmask, wshares)})


def test_pad_loss_is_global_plus_mixture_of_locals():
    torch.manual_seed(6)
    text = _text_batch()
    method = build_method("pad", MethodContext(8, text_dim=6), {"granularities": ["token", "word"],
                                                                 "global_weight": 0.7, "local_weight": 2.0})
    states, mask = [torch.randn(3, 9, 8)], _mask(3, 9, [9, 6, 4])
    loss, logs = method(states, mask, _batch(text=text))
    frames = method.proj(states[-1])
    m = mask.float()[..., None]
    pooled = (frames * m).sum(1) / m.sum(1)
    glob = global_alignment(pooled, text.sentence, 0.07)
    locs = [local_alignment(frames, mask, *text.units[g], width=0.5, temperature=0.1) for g in ("token", "word")]
    w = method.mixture.weights()
    entropy = -(w * w.log()).sum()
    want = 0.7 * glob + 2.0 * ((w * torch.stack(locs)).sum() - 0.1 * entropy)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert logs["global"] == pytest.approx(glob.item(), rel=1e-5) and logs["weight_token"] == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_text_metric_losses(kind):
    torch.manual_seed(7)
    text = _text_batch()
    method = build_method("text_metric", MethodContext(8, text_dim=6), {"loss": kind})
    states, mask = [torch.randn(3, 9, 8)], _mask(3, 9, [9, 6, 4])
    loss, logs = method(states, mask, _batch(text=text))
    frames = method.proj(states[-1]).detach().numpy()
    pooled = np.stack([frames[b, :n].mean(0) for b, n in enumerate([9, 6, 4])])
    s = text.sentence.numpy()
    if kind == "mse":
        want = np.mean(((pooled - s) ** 2).sum(-1))
    else:
        want = np.mean(1 - (pooled * s).sum(-1) / np.linalg.norm(pooled, axis=1) / np.linalg.norm(s, axis=1))
    assert loss.item() == pytest.approx(want, rel=1e-5)


def test_text_students_need_the_text_width():
    with pytest.raises(ValueError, match="text teacher"):
        build_method("pad", MethodContext(8), {})
