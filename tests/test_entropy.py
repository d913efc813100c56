import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from icmkit.entropy import EntropyBottleneck, GaussianConditional, decode_with_tables, encode_with_tables
from icmkit.entropy.coder import MAX_ESCAPE_VALUE
from icmkit.errors import BitstreamError
from icmkit.layers.integer import ExactIntegerNet
from icmkit.models.hyperprior import conv, deconv

from helpers.threads import at_thread_counts


@pytest.fixture(scope="module")
def gaussian():
    model = GaussianConditional()
    model.update()
    return model


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-MAX_ESCAPE_VALUE // 2, MAX_ESCAPE_VALUE // 2), min_size=1, max_size=200),
    st.integers(0, 2**31 - 1),
)
def test_coder_round_trips_any_values_including_escapes(gaussian, values, seed):
    values = np.array(values, dtype=np.int64)
    index = np.random.default_rng(seed).integers(0, gaussian.tables().count, len(values))
    data = encode_with_tables(values, index, gaussian.tables())
    np.testing.assert_array_equal(decode_with_tables(data, index, gaussian.tables()), values)


def test_coder_rate_close_to_entropy(gaussian):
    rng = np.random.default_rng(0)
    index = np.full(20000, 20)
    scale = float(gaussian.scale_table[20])
    values = np.round(rng.normal(0, scale, index.size)).astype(np.int64)
    data = encode_with_tables(values, index, gaussian.tables())
    lik = GaussianConditional.likelihood(
        torch.tensor(values, dtype=torch.float64), torch.tensor(scale), torch.tensor(0.0)
    )
    ideal_bits = float(-torch.log2(lik).sum())
    assert 8 * len(data) < ideal_bits * 1.01 + 64


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=24), st.integers(0, 63), st.integers(1, 60))
def test_decoding_any_bytes_gives_encodable_values_or_a_bitstream_error(gaussian, data, table, count):
    index = np.full(count, table)
    try:
        out = decode_with_tables(data, index, gaussian.tables())
    except BitstreamError:
        return
    assert out.shape == (count,) and np.abs(out).max() <= MAX_ESCAPE_VALUE // 2
    encode_with_tables(out, index, gaussian.tables())  # what the decoder returns, an encoder can write


def test_table_index_out_of_range_is_refused(gaussian):
    with pytest.raises(BitstreamError, match="table index"):
        decode_with_tables(b"", np.full(3, 999), gaussian.tables())


def test_data_constriction_rejects_is_a_bitstream_error(gaussian):
    # Found by search: constriction raises AssertionError (its InvalidData) on these two bytes.
    with pytest.raises(BitstreamError, match="invalid for its probability tables"):
        decode_with_tables(bytes.fromhex("0ae2"), np.full(5, 44), gaussian.tables())


def test_data_left_after_the_last_symbol_is_refused(gaussian):
    index = np.full(40, 30)
    data = encode_with_tables(np.arange(40) % 5 - 2, index, gaussian.tables())
    decode_with_tables(data, index, gaussian.tables())
    with pytest.raises(BitstreamError, match="data left"):
        decode_with_tables(data + b"\x5a" * 8, index, gaussian.tables())  # a word more is seen as read-ahead
    with pytest.raises(BitstreamError, match="no symbols"):
        decode_with_tables(data, np.zeros(0, dtype=np.int64), gaussian.tables())


def test_escaped_value_beyond_the_encoders_range_is_refused(gaussian):
    from icmkit.entropy.coder import MAX_ESCAPE_BITS, _model, _queue, _to_bytes

    tables = gaussian.tables()
    # One escape symbol, then sign +, the largest bit count and all-ones low bits: 2**21 - 1 > the limit.
    encoder = _queue.RangeEncoder()
    encoder.encode(np.array([int(tables.length[0])], dtype=np.int32), tables.model(0))
    encoder.encode(np.array([0], dtype=np.int32), _model.Uniform(2))
    encoder.encode(np.array([MAX_ESCAPE_BITS], dtype=np.int32), _model.Uniform(MAX_ESCAPE_BITS + 1))
    encoder.encode(
        np.array([(1 << MAX_ESCAPE_BITS) - 1], dtype=np.int32),
        _model.Uniform(),
        np.array([1 << MAX_ESCAPE_BITS], dtype=np.int32),
    )
    with pytest.raises(BitstreamError, match="out of range"):
        decode_with_tables(_to_bytes(encoder.get_compressed()), np.zeros(1, dtype=np.int64), tables)


def test_factorized_prior_tables_survive_state_dict():
    prior = EntropyBottleneck(4)
    prior.update()
    z = torch.randint(-12, 12, (4, 3, 5)).float()
    data = prior.compress(z)
    clone = EntropyBottleneck(4)
    clone.load_state_dict(prior.state_dict())
    assert torch.equal(clone.decompress(data, (3, 5)), z)


def test_unfinalised_model_refuses_to_code():
    with pytest.raises(RuntimeError, match="update"):
        EntropyBottleneck(2).compress(torch.zeros(2, 1, 1))


def test_aux_loss_moves_quantiles_towards_tails():
    prior = EntropyBottleneck(2)
    optimizer = torch.optim.Adam([prior.quantiles], lr=0.1)
    first = float(prior.aux_loss().detach())
    for _ in range(50):
        optimizer.zero_grad()
        prior.aux_loss().backward()
        optimizer.step()
    assert float(prior.aux_loss().detach()) < first


def _hyper_synthesis():
    torch.manual_seed(0)
    return torch.nn.Sequential(deconv(8, 12), torch.nn.ReLU(), deconv(12, 16), torch.nn.ReLU(), conv(16, 20, 3, 1))


def test_integer_net_tracks_float_net():
    net = _hyper_synthesis()
    exact = ExactIntegerNet(net)
    exact.quantize_from(net)
    z = torch.randint(-6, 7, (2, 8, 3, 4)).float()
    reference = net(z)
    approx = ExactIntegerNet.from_fixed(exact(ExactIntegerNet.to_fixed(z)))
    assert (approx - reference).abs().max() < 0.05 * reference.abs().max()


def test_integer_net_is_independent_of_threads_and_batch():
    net = _hyper_synthesis()
    exact = ExactIntegerNet(net)
    exact.quantize_from(net)
    z = ExactIntegerNet.to_fixed(torch.randint(-20, 21, (3, 8, 5, 6)).float())
    one, two = at_thread_counts(lambda: exact(z))
    alone = exact(z[1:2])
    assert torch.equal(one, two) and torch.equal(one[1:2], alone)
    assert torch.equal(one, torch.round(one))  # integers, as the decoder's table lookup requires


def test_lower_bound_lets_gradients_lift_values_from_below():
    from icmkit.entropy.quantize import lower_bound

    x = torch.tensor([0.05, 0.05, 0.5], requires_grad=True)
    out = lower_bound(x, 0.11)
    assert torch.allclose(out, torch.tensor([0.11, 0.11, 0.5]))
    (out * torch.tensor([-1.0, 1.0, 1.0])).sum().backward()  # minimising: lift, push down, push down
    assert x.grad.tolist() == [-1.0, 0.0, 1.0]
