"""Volatility data: readers and their errors, the simulator, representations, splits, no look-ahead."""

import numpy as np
import pytest
import torch

from data.synth.order_flow import simulate_order_flow, write_binance_agg_trades, write_lobster
from data.volatility import (
    BarsDataModule,
    BinanceTradesDataModule,
    LobsterDataModule,
    OrderFlowFormatError,
    SimulatedOrderFlowDataModule,
    make_intervals,
    read_bars,
    read_binance_agg_trades,
    read_lobster,
)

SMALL = dict(intervals=160, batch_size=8)


@pytest.fixture(scope="module")
def simulation():
    return simulate_order_flow(intervals=60, seed=1)


def test_simulated_realised_volatility_tracks_the_latent_volatility():
    sim = simulate_order_flow(intervals=400, seed=0)
    dm = SimulatedOrderFlowDataModule(intervals=400)
    dm.setup()
    # realised volatility of the emitted mids is a noisy measure of the latent one
    corr = np.corrcoef(np.log(dm.rv), np.log(sim.sigma[dm.active]))[0, 1]
    assert corr > 0.8
    # the order flow leaks the coming volatility: activity predicts the next log-variance
    assert np.corrcoef(sim.activity[:-1], np.log(sim.sigma[1:]))[0, 1] > 0.2


def test_simulation_is_seeded(simulation):
    again = simulate_order_flow(intervals=60, seed=1)
    np.testing.assert_array_equal(simulation.trade_price, again.trade_price)
    assert not np.array_equal(
        simulate_order_flow(intervals=60, seed=2).trade_price, again.trade_price
    )


def test_image_and_sequence_batches():
    dm = SimulatedOrderFlowDataModule(**SMALL)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 5, 32, 32)  # buy, sell, count, bid depth, ask depth
    assert dm.in_chans == 5 and batch["features"].shape == (8, dm.num_features)
    assert (batch["target"] > 0).all() and torch.isfinite(batch["image"]).all()
    seq = SimulatedOrderFlowDataModule(representation="sequence", **SMALL)
    seq.setup()
    x = next(iter(seq.train_dataloader()))["image"]
    assert x.shape == (8, seq.in_chans, 32) and seq.in_chans == len(seq.input_names) == 9


def test_splits_are_chronological_with_a_gap():
    dm = SimulatedOrderFlowDataModule(**SMALL)
    dm.setup()
    train, val, test = (dm.splits[s] for s in ("train", "val", "test"))
    assert train.max() + dm.gap < val.min() and val.max() + dm.gap < test.min()
    # the first validation window starts after the last training target
    assert val.min() - dm.window + 1 > train.max() + 1


def test_no_look_ahead():
    """Change the market after a cut in the test period: no input before the cut changes."""
    base = SimulatedOrderFlowDataModule(**SMALL)
    base.setup()
    cut_sample = int(base.splits["test"][len(base.splits["test"]) // 2])
    cut_time = base.interval_start[cut_sample + 1]

    class Changed(SimulatedOrderFlowDataModule):
        def _load(self):
            flow = super()._load()
            after = flow.trade_time >= cut_time
            flow.trade_price[after] *= 1.05
            flow.trade_size[after] *= 3
            late = flow.book_time >= cut_time
            for prices in (flow.bid_price, flow.ask_price):
                prices[late] *= 1.05
            return flow

    changed = Changed(**SMALL)
    changed.setup()
    before = base.splits["test"] <= cut_sample
    a, b = base.datasets["test"], changed.datasets["test"]
    torch.testing.assert_close(a.inputs[before], b.inputs[before])
    torch.testing.assert_close(a.features[before], b.features[before])
    assert not torch.equal(a.inputs[~before], b.inputs[~before])


def test_binance_reader_round_trip(tmp_path, simulation):
    path = tmp_path / "BTCUSDT-aggTrades-2020-09-13.csv"
    write_binance_agg_trades(simulation, path)
    flow = read_binance_agg_trades(path)
    np.testing.assert_allclose(flow.trade_price, simulation.trade_price, rtol=1e-7)
    np.testing.assert_array_equal(flow.trade_is_buy, simulation.trade_is_buy)
    # headerless, as older dumps are
    lines = path.read_text().splitlines()[1:]
    (tmp_path / "noheader.csv").write_text("\n".join(lines) + "\n")
    assert len(read_binance_agg_trades(tmp_path / "noheader.csv").trade_time) == len(lines)
    dm = BinanceTradesDataModule(path=str(path), batch_size=4)
    dm.setup()
    assert dm.in_chans == 3  # no book


def test_lobster_reader_round_trip(tmp_path, simulation):
    message = tmp_path / "SIM_2012-06-21_34200000_57600000_message_10.csv"
    book = tmp_path / "SIM_2012-06-21_34200000_57600000_orderbook_10.csv"
    write_lobster(simulation, message, book)
    flow = read_lobster(message, book)
    assert flow.has_book and flow.bid_price.shape[1] == 10
    np.testing.assert_allclose(flow.trade_price, simulation.trade_price, atol=1e-4)
    np.testing.assert_array_equal(flow.trade_is_buy, simulation.trade_is_buy)
    dm = LobsterDataModule(path=str(tmp_path / "*_message_10.csv"), batch_size=4)
    dm.setup()
    assert dm.in_chans == 5


def test_bars_reader_and_datamodule(tmp_path):
    rng = np.random.default_rng(0)
    n = 48 * 60
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    stamps = np.datetime64("2020-01-01T00:00") + np.arange(n) * np.timedelta64(30, "m")
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [
        f"{t},{c},{c * 1.001},{c * 0.999},{c},{1 + i % 7}"
        for i, (t, c) in enumerate(zip(stamps, close))
    ]
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(lines) + "\n")
    flow = read_bars(path)
    assert flow.has_bars and len(flow.bar_time) == n
    grid = make_intervals(flow, 86400, 48)
    assert grid.active.sum() == 60
    dm = BarsDataModule(
        path=str(path), interval_seconds=86400, sub_intervals=48, window=1, batch_size=4
    )
    dm.setup()
    assert dm.in_chans == 2 and next(iter(dm.train_dataloader()))["image"].shape[1:] == (2, 48, 32)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "agg_trade_id,price,quantity,transact_time,is_buyer_maker\n1,10,1,1000,true\n2,10,1,900,false\n",
            r"line 3: rows out of time order",
        ),
        (
            "agg_trade_id,price,transact_time,is_buyer_maker\n1,10,1000,true\n",
            r"missing column\(s\) quantity",
        ),
        (
            "agg_trade_id,price,quantity,transact_time,is_buyer_maker\n1,10,1,1000,true\n2,nan,1,1001,false\n",
            r"line 3: column 'price' is '?nan'?, not a finite number",
        ),
        (
            "agg_trade_id,price,quantity,transact_time,is_buyer_maker\n1,10,1,1000,maybe\n",
            r"line 2: is_buyer_maker is 'maybe'",
        ),
    ],
)
def test_binance_reader_errors_name_file_and_row(tmp_path, content, message):
    path = tmp_path / "trades.csv"
    path.write_text(content)
    with pytest.raises(OrderFlowFormatError, match=message) as error:
        read_binance_agg_trades(path)
    assert "trades.csv" in str(error.value)


def test_bars_reader_errors(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("timestamp,open\n1,2\n")
    with pytest.raises(OrderFlowFormatError, match="bars.csv: missing column 'close'"):
        read_bars(path)
    path.write_text("timestamp,close\n2,1.0\n1,1.0\n")
    with pytest.raises(OrderFlowFormatError, match="bars.csv: line 3: rows out of time order"):
        read_bars(path)
    path.write_text("timestamp,close\n1,1.0\n2,inf\n")
    with pytest.raises(
        OrderFlowFormatError, match="line 3: column 'close' is 'inf', not a finite number"
    ):
        read_bars(path)


def test_lobster_reader_errors(tmp_path):
    message, book = tmp_path / "m.csv", tmp_path / "b.csv"
    message.write_text("34200.1,4,1,10,1000000,-1\n34200.0,4,2,10,1000000,1\n")
    book.write_text("1000100,5,999900,5\n1000100,5,999900,5\n")
    with pytest.raises(OrderFlowFormatError, match="m.csv: line 2: rows out of time order"):
        read_lobster(message, book)
    book.write_text("1000100,5,999900,5\n")
    with pytest.raises(OrderFlowFormatError, match="1 rows but m.csv has 2 messages"):
        read_lobster(message, book)
