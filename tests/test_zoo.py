"""engine.zoo: every architecture against PyTorch (torchvision or a twin), parameter counts,
weight-loading errors, determinism, and the receptive-field columns of the summary.

`pytest -s tests/test_zoo.py` prints the max relative difference per model.
"""

import math

import numpy as np
import pytest

import engine
import engine.zoo as zoo
from engine.summary import format_summary, layer_stats

# name -> (input H=W for the comparison, batch); small where the architecture allows.
CASES = {
    "lenet5": (32, 2), "alexnet": (64, 2), "alexnet_original": (227, 1), "zfnet": (224, 1),
    "vgg11": (32, 2), "vgg11_lrn": (32, 2), "vgg13": (32, 2), "vgg16_c": (32, 2),
    "vgg16": (32, 2), "vgg19": (32, 2), "vgg11_bn": (32, 2), "vgg13_bn": (32, 2),
    "vgg16_bn": (32, 2), "vgg19_bn": (32, 2), "googlenet": (64, 2), "resnet18": (64, 2),
    "resnet34": (64, 2), "resnet50": (64, 2), "resnet101": (64, 1), "resnet152": (64, 1),
    "resnext50_32x4d": (64, 2), "se_resnet50": (64, 2), "mobilenet_v1": (64, 2),
    "mobilenet_v2": (64, 2), "shufflenet_v2_x0_5": (64, 2), "shufflenet_v2_x1_0": (64, 2),
    "squeezenet1_0": (64, 2), "squeezenet1_1": (64, 2), "densenet121": (64, 2),
    "fcn_resnet50": (64, 1), "unet": (32, 2), "context_net": (48, 2),
    "conv_autoencoder": (28, 2),
}

PUBLISHED = {   # torchvision's documented parameter counts
    "resnet50": 25_557_032, "vgg16": 138_357_544, "alexnet": 61_100_840,
    "resnet18": 11_689_512, "mobilenet_v2": 3_504_872, "googlenet": 6_624_904,
    "densenet121": 7_978_856, "squeezenet1_1": 1_235_496, "shufflenet_v2_x1_0": 2_278_604,
    "resnext50_32x4d": 25_028_904,
}

RESULTS = {}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if RESULTS:
        print("\n\nzoo vs PyTorch: max |ours - torch| / max |torch|")
        for name in sorted(RESULTS):
            err, count = RESULTS[name]
            print(f"  {name:<22} {err:9.2e}   {count:>12,} parameters")


# -- PyTorch side ------------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


def _torch_model(name):
    """The PyTorch model of a zoo name: torchvision's where it has one, else the twin."""
    _torch()
    from torch_twins import TWINS
    if name in TWINS:
        return TWINS[name]()
    from tv_compat import import_torchvision
    tv = import_torchvision()
    if tv is None:
        pytest.skip("torchvision is not installed")
    m = tv.models
    if name == "googlenet":
        return m.googlenet(weights=None, aux_logits=False, init_weights=False)
    if name == "fcn_resnet50":
        return m.segmentation.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=False)
    if name.startswith("vgg"):
        return getattr(m, name)(weights=None, init_weights=False)    # _randomize inits
    return getattr(m, name)(weights=None)


def _randomize(model, x, seed=0):
    """He-normal weights, random BN affine, and BN statistics calibrated on ``x`` then
    perturbed (mean + N(0, 0.1) std, var * U(0.5, 1.5)), so a folding mistake would show
    while activations stay O(1).  Calibration runs one eval-mode forward in which each BN,
    just before it runs, takes the statistics of its actual input: later layers see the
    earlier layers' perturbed statistics, so deep networks do not drift."""
    torch = _torch()
    nn = torch.nn
    g = torch.Generator().manual_seed(seed)

    def calibrate(mod, inputs):
        t = inputs[0]
        dims = [0] + list(range(2, t.dim()))
        mean, var = t.mean(dims), t.var(dims)
        c = mod.num_features
        mod.running_mean.copy_(mean + torch.randn(c, generator=g) * 0.1 * var.sqrt())
        # a floor: a channel can be (nearly) constant over a small calibration batch
        mod.running_var.copy_(var.clamp(min=0.1) * (torch.rand(c, generator=g) + 0.5))

    hooks = []
    with torch.no_grad():
        for path, mod in model.named_modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
                if isinstance(mod, nn.ConvTranspose2d):
                    k, s = mod.kernel_size, mod.stride
                    fan = mod.in_channels * k[0] * k[1] / (s[0] * s[1])
                else:
                    fan = mod.weight[0].numel()
                mod.weight.normal_(0.0, math.sqrt(2.0 / fan), generator=g)
                if mod.bias is not None:
                    mod.bias.uniform_(-0.1, 0.1, generator=g)
            elif isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.7, 1.2, generator=g)
                if path.endswith(".bn3"):       # last BN of a bottleneck: a smaller residual
                    mod.weight.mul_(0.3)        # branch keeps 50-block networks conditioned
                mod.bias.normal_(0.0, 0.1, generator=g)
                hooks.append(mod.register_forward_pre_hook(calibrate))
        model.eval()
        if hooks:
            model(x)
            for h in hooks:
                h.remove()
    return model


def _run_torch(model, x):
    torch = _torch()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    if isinstance(out, dict):
        out = out["out"]
    return out.numpy()


# -- comparisons against PyTorch ---------------------------------------------------------------

def test_every_zoo_model_has_a_case():
    assert set(CASES) <= set(zoo.names())
    untested = set(zoo.names()) - set(CASES)
    assert untested <= {"shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "densenet161",
                        "densenet169", "densenet201"}, untested


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_pytorch(name):
    torch = _torch()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    size, batch = CASES[name]
    model = _torch_model(name)
    c = zoo.info(name).input_size[0]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, c, size, size)).astype(np.float32)
    calib = rng.standard_normal((max(batch, 2), c, size, size)).astype(np.float32)
    _randomize(model, torch.from_numpy(calib))
    expected = _run_torch(model, x)

    ours = zoo.get(name, weights=model.state_dict(), input_size=size)
    got, = engine.Session(ours, threads=2).run(x)
    assert got.shape == expected.shape
    err = float(np.abs(got - expected).max() / np.abs(expected).max())
    count = sum(p.numel() for p in model.parameters())
    RESULTS[name] = (err, count)
    print(f"\n{name}: max rel diff {err:.2e}")
    assert err <= 1e-4, f"{name}: relative difference {err:.3g}"
    # Parameter counts: ours == PyTorch's == torchvision's published number.
    assert ours.metadata["num_parameters"] == count
    if name in PUBLISHED:
        assert count == PUBLISHED[name]
    # Constants are exactly the state dict (names and values), minus num_batches_tracked.
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(ours.constants) == set(sd)
    assert ours.metadata["architecture"] == name


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "mobilenet_v2", "densenet121",
                                  "squeezenet1_1", "shufflenet_v2_x1_0"])
def test_node_names_follow_torchvision(name):
    """Node names are torchvision's module paths / torch.fx node names."""
    _torch()
    model = _torch_model(name).eval()
    from torchvision.models.feature_extraction import get_graph_node_names
    fx = set(get_graph_node_names(model)[1])
    modules = {n for n, _ in model.named_modules()}
    ours = zoo.get(name, input_size=64)
    extra = {n.name for n in ours.nodes} - fx - modules - {"logits"}
    allowed = {"channel_shuffle"} if name.startswith("shufflenet") else set()
    assert {e for e in extra if e.rsplit(".", 1)[-1] not in allowed} == set()


def test_googlenet_transform_input():
    torch = _torch()
    from tv_compat import import_torchvision
    tv = import_torchvision()
    if tv is None:
        pytest.skip("torchvision is not installed")
    model = tv.models.googlenet(weights=None, aux_logits=False, init_weights=False,
                                transform_input=True)
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    _randomize(model, torch.from_numpy(np.concatenate([x, x[:, ::-1]])))
    expected = _run_torch(model, x)
    ours = zoo.get("googlenet", weights=model.state_dict(), input_size=64, transform_input=True)
    got, = engine.Session(ours, threads=2).run(x)
    # This randomised net amplifies rounding: im2col alone is at 9.8e-5 of max|y|; its
    # Winograd F(6x6) / F(4x4) layers (per-layer bound in test_winograd.py) measured 1.9e-4.
    assert np.abs(got - expected).max() <= 5e-4 * np.abs(expected).max()
    assert ours.metadata["options"] == {"transform_input": True}


def test_googlenet_ignores_aux_heads_of_checkpoints():
    _torch()
    from tv_compat import import_torchvision
    tv = import_torchvision()
    if tv is None:
        pytest.skip("torchvision is not installed")
    sd = tv.models.googlenet(weights=None, aux_logits=True, init_weights=False).state_dict()
    assert any(k.startswith("aux1.") for k in sd)
    m = zoo.get("googlenet", weights=sd, input_size=64)
    assert not any(k.startswith("aux") for k in m.constants)


# -- without PyTorch ---------------------------------------------------------------------------

def test_names_and_metadata():
    names = zoo.names()
    assert names == sorted(names)
    for required in ("lenet5", "alexnet", "alexnet_original", "zfnet", "vgg11", "vgg11_lrn",
                     "vgg13", "vgg16_c", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn",
                     "vgg19_bn", "googlenet", "resnet18", "resnet34", "resnet50", "resnet101",
                     "resnet152", "resnext50_32x4d", "se_resnet50", "mobilenet_v1",
                     "mobilenet_v2", "shufflenet_v2_x1_0", "squeezenet1_1", "densenet121",
                     "fcn_resnet50", "unet", "context_net", "conv_autoencoder"):
        assert required in names
    m = zoo.get("resnet18", input_size=64)
    assert m.inputs[0].name == "input" and m.inputs[0].shape == (None, 3, 64, 64)
    assert m.outputs == ["logits"]
    meta = m.metadata
    assert meta["architecture"] == "resnet18" and meta["num_classes"] == 1000
    assert meta["input_size"] == [3, 64, 64]
    assert meta["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert meta["preprocessing"]["std"] == [0.229, 0.224, 0.225]
    seg = zoo.get("fcn_resnet50", input_size=64)
    assert seg.outputs == ["out"] and seg.values["out"].shape == (None, 21, 64, 64)


def test_published_parameter_counts_without_torch():
    for name in ("resnet18", "mobilenet_v2", "googlenet", "densenet121", "squeezenet1_1",
                 "shufflenet_v2_x1_0", "resnext50_32x4d", "resnet50"):
        m = zoo.get(name, input_size=64)
        assert m.metadata["num_parameters"] == PUBLISHED[name], name
        stats = sum(a.size for k, a in m.constants.items()
                    if k.endswith(("running_mean", "running_var")))
        assert m.num_parameters() == PUBLISHED[name] + stats


def test_embedding_and_intermediate_layers():
    m = zoo.get("resnet18", input_size=64)
    sess = engine.Session(m, threads=2)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    logits, pooled, emb, conv = sess.run(x, outputs=["logits", "avgpool", "flatten",
                                                     "layer1.0.conv1"])
    assert pooled.shape == (2, 512, 1, 1) and emb.shape == (2, 512)
    assert conv.shape == (2, 64, 16, 16)
    assert m.metadata["embedding"] == "flatten"
    assert np.isfinite(logits).all() and 0.1 < float(np.abs(logits).max()) < 1e3


def test_random_weights_are_deterministic():
    a = zoo.get("mobilenet_v2", input_size=32)
    b = zoo.get("mobilenet_v2", input_size=32)
    assert set(a.constants) == set(b.constants)
    for k in a.constants:
        np.testing.assert_array_equal(a.constants[k], b.constants[k])
    # BatchNorm statistics are randomised: folding mistakes would show.
    var = a.constants["features.1.conv.0.1.running_var"]
    assert 0.5 <= var.min() and var.max() <= 1.5 and var.std() > 0.1
    assert np.abs(a.constants["features.1.conv.0.1.running_mean"]).max() > 0
    # Seeded by the model name: another model's same-named tensor differs.
    r18 = zoo.get("resnet18", input_size=32).constants["conv1.weight"]
    r34 = zoo.get("resnet34", input_size=32).constants["conv1.weight"]
    assert not np.array_equal(r18, r34)


def _lenet_sd():
    m = zoo.get("lenet5")
    return {k: v.copy() for k, v in m.constants.items()}


def test_state_dict_roundtrip_and_num_classes_from_weights():
    sd = _lenet_sd()
    m = zoo.get("lenet5", weights=sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(m.constants[k], v)
    sd["12.weight"], sd["12.bias"] = sd["12.weight"][:3], sd["12.bias"][:3]
    m3 = zoo.get("lenet5", weights=sd)
    assert m3.metadata["num_classes"] == 3 and m3.values["logits"].shape == (None, 3)
    # DataParallel prefixes are stripped; num_batches_tracked is ignored.
    wrapped = {f"module.{k}": v for k, v in sd.items()}
    wrapped["module.bn.num_batches_tracked"] = np.array(0)
    assert set(zoo.get("lenet5", weights=wrapped).constants) == set(sd)


def test_wrong_shape_names_tensor_and_both_shapes():
    sd = _lenet_sd()
    sd["3.weight"] = np.zeros((16, 6, 3, 3), np.float32)
    with pytest.raises(engine.ConversionError) as e:
        zoo.get("lenet5", weights=sd)
    msg = str(e.value)
    assert "3.weight" in msg and "(16, 6, 3, 3)" in msg and "(16, 6, 5, 5)" in msg


def test_missing_and_unexpected_keys_are_all_listed():
    sd = _lenet_sd()
    del sd["0.bias"], sd["7.weight"], sd["10.bias"]
    sd["extra.weight"] = np.zeros(3, np.float32)
    sd["head.bias"] = np.zeros(3, np.float32)
    with pytest.raises(engine.ConversionError) as e:
        zoo.get("lenet5", weights=sd)
    msg = str(e.value)
    assert "missing (3)" in msg and "unexpected (2)" in msg
    for k in ("0.bias", "7.weight", "10.bias", "extra.weight", "head.bias"):
        assert k in msg


def test_bad_arguments():
    with pytest.raises(engine.GraphError, match="unknown zoo model"):
        zoo.get("resnet0")
    with pytest.raises(engine.GraphError, match="option"):
        zoo.get("resnet18", width_mult=2)
    with pytest.raises(engine.GraphError, match="227x227"):
        zoo.get("alexnet_original", input_size=224)
    with pytest.raises(engine.GraphError, match="divisible by 16"):
        zoo.get("unet", input_size=40)
    with pytest.raises(engine.ConversionError, match="state dict"):
        zoo.get("lenet5", weights=[1, 2, 3])


def test_torch_tensors_are_accepted():
    torch = _torch()
    sd = {k: torch.from_numpy(v) for k, v in _lenet_sd().items()}
    m = zoo.get("lenet5", weights=sd)
    np.testing.assert_array_equal(m.constants["0.weight"], sd["0.weight"].numpy())


def test_small_models_run_on_both_backends():
    """Reference and cpu backends agree on the zoo's unusual ops (LRN, dilation, conv_transpose,
    channel shuffle, SE, bilinear upsampling)."""
    rng = np.random.default_rng(3)
    for name, kw in [("context_net", {"input_size": 24}), ("conv_autoencoder", {}),
                     ("unet", {"input_size": 16, "base": 8, "batch_norm": True})]:
        m = zoo.get(name, **kw)
        x = rng.standard_normal((2,) + m.inputs[0].shape[1:]).astype(np.float32)
        ref, = engine.Session(m, backend="reference", optimize_graph=False).run(x)
        cpu, = engine.Session(m, threads=2).run(x)
        assert np.abs(ref - cpu).max() <= 1e-4 * max(1.0, np.abs(ref).max()), name
    out, = engine.Session(zoo.get("conv_autoencoder")).run(
        rng.standard_normal((1, 1, 28, 28)).astype(np.float32))
    assert out.shape == (1, 1, 28, 28) and (out > 0).all() and (out < 1).all()


# -- summary: receptive field and jump ---------------------------------------------------------

def test_receptive_field_vgg16():
    model = zoo.get("vgg16", input_size=224)
    rows = {r.name: r for r in layer_stats(model)}
    f = lambda i: rows[f"features.{i}"]   # noqa: E731
    assert (f(0).rf, f(0).jump) == (3, 1)       # conv1_1
    assert (f(2).rf, f(2).jump) == (5, 1)       # conv1_2
    assert (f(4).rf, f(4).jump) == (6, 2)       # pool1
    assert (f(9).rf, f(9).jump) == (16, 4)      # pool2
    assert (f(16).rf, f(16).jump) == (44, 8)    # pool3
    assert (f(23).rf, f(23).jump) == (100, 16)  # pool4
    assert (f(28).rf, f(28).jump) == (196, 16)  # conv5_3 (the last conv)
    assert (f(29).rf, f(29).jump) == (196, 16)  # its ReLU passes through
    assert (f(30).rf, f(30).jump) == (212, 32)  # pool5
    text = format_summary(model)
    header = text.splitlines()[0].split()
    assert "RF" in header and "jump" in header


def test_receptive_field_merges_dilation_and_transposed_conv():
    rows = {r.name: r for r in layer_stats(zoo.get("context_net"))}
    assert rows["12"].rf == 67 and rows["14"].rf == 67 and rows["14"].jump == 1
    rows = {r.name: r for r in layer_stats(zoo.get("resnet18", input_size=64))}
    assert rows["conv1"].rf == 7 and rows["maxpool"].rf == 11 and rows["maxpool"].jump == 4
    # add takes the larger receptive field of its inputs (the conv branch over the identity)
    assert rows["layer1.0.add"].rf == rows["layer1.0.bn2"].rf == 27
    ae = {r.name: r for r in layer_stats(zoo.get("conv_autoencoder"))}
    assert ae["encoder.2"].jump == 4 and ae["decoder.2"].jump == 1


def test_checkpoint_path(tmp_path):
    torch = _torch()
    pytest.importorskip("engine.convert")
    from torch_twins import lenet5
    net = lenet5().eval()
    path = tmp_path / "lenet5.pth"
    torch.save(net.state_dict(), path)
    m = zoo.get("lenet5", weights=str(path))
    x = np.random.default_rng(4).standard_normal((2, 1, 32, 32)).astype(np.float32)
    got, = engine.Session(m, threads=2).run(x)
    assert np.abs(got - _run_torch(net, x)).max() <= 1e-4 * max(1.0, np.abs(got).max())


def test_input_size_forms():
    assert zoo.get("lenet5", input_size=(1, 32, 32)).inputs[0].shape == (None, 1, 32, 32)
    m = zoo.get("unet", input_size=(3, 32, 48), in_channels=3, base=4)
    assert m.inputs[0].shape == (None, 3, 32, 48) and m.values["out"].shape == (None, 2, 32, 48)
    with pytest.raises(engine.GraphError, match="in_channels"):
        zoo.get("unet", input_size=(3, 32, 32), base=4)
    with pytest.raises(engine.GraphError, match="input channels"):
        zoo.get("resnet18", input_size=(1, 64, 64))
    with pytest.raises(engine.GraphError, match="no classifier"):
        zoo.get("conv_autoencoder", num_classes=3)


def test_a_state_dict_of_another_architecture_is_summarised():
    sd = dict(engine.zoo.get("resnet18").constants)
    with pytest.raises(engine.ConversionError) as e:
        engine.zoo.get("resnet50", weights=sd)
    text = str(e.value)
    assert "is the state dict for another architecture?" in text
    assert "... and" in text and "more of other shapes" in text
    lines = text.splitlines()
    assert len(lines) <= 3 + engine.zoo._core.SHOWN + 2        # not one line per tensor
    assert all(len(line) < 1000 for line in lines)
