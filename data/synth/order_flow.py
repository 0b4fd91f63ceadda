"""A limit-order-book simulator whose order flow carries information about the coming volatility.

Synthetic data, NOT market data: it stands in for the paper's Bitcoin trades where no intraday
trades and quotes can ship with the project (`Learning to Predict Short-Term Volatility with Order
Flow Image Representation`, the seed paper of task=volatility).

The latent state is a log-variance per interval, an AR(1) with GARCH-like feedback from the last
interval's return and a hidden *activity* shock `a_t`:

    h_{t+1} = mu + phi (h_t - mu) + beta a_t + alpha (|z_t| - E|z|) + nu eps_{t+1}

The activity shock is what the order flow reveals before prices do: during interval t it ramps up
trade arrivals and trade sizes and thins the book (toward the end of the interval), so a model
that reads the order flow can anticipate h_{t+1} beyond what the current realised volatility
says, which is the paper's premise. Within an interval the mid-price follows a random walk whose
sub-interval variances sum to exp(h_t) (an intraday U-shape spreads them). Trades arrive as a
Poisson process, buy at the ask and sell at the bid, their signs lean with the price move (price
impact), and the book holds `levels` price levels each side, snapshotted at every sub-interval end.

The realised volatility a datamodule computes from the emitted book is exact by construction: it
is the realised volatility of exactly the mid-prices written out. The latent `sigma` is kept too.
`write_binance_agg_trades` and `write_lobster` write the simulation in the two public layouts the
readers of data/volatility.py read, so the same code path serves real and simulated files.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SimulatedOrderFlow", "simulate_order_flow", "write_binance_agg_trades", "write_lobster"]


@dataclass
class SimulatedOrderFlow:
    """Trades, book snapshots (at every sub-interval end) and the latent state.

    Times are seconds from the start of the simulation. Book arrays are (snapshots, levels),
    level 0 the best price.
    """

    trade_time: np.ndarray
    trade_price: np.ndarray
    trade_size: np.ndarray
    trade_is_buy: np.ndarray
    book_time: np.ndarray
    bid_price: np.ndarray
    bid_size: np.ndarray
    ask_price: np.ndarray
    ask_size: np.ndarray
    #: Latent volatility of each interval (sqrt of its total mid-price variance).
    sigma: np.ndarray
    #: The hidden activity shock of each interval (what the order flow leaks about h_{t+1}).
    activity: np.ndarray
    interval_seconds: float
    sub_intervals: int


def simulate_order_flow(
    intervals: int = 3000,
    sub_intervals: int = 16,
    interval_seconds: float = 600.0,
    levels: int = 10,
    trades_per_sub_interval: float = 6.0,
    price: float = 100.0,
    tick: float = 0.01,
    volatility: float = 0.002,
    persistence: float = 0.9,
    activity_loading: float = 0.35,
    return_feedback: float = 0.1,
    noise: float = 0.15,
    seed: int = 0,
) -> SimulatedOrderFlow:
    """Simulate `intervals` intervals of order flow.

    Args:
        intervals: Number of intervals (the unit whose realised volatility is predicted).
        sub_intervals: Book snapshots and price-path points per interval.
        interval_seconds: Length of an interval.
        levels: Book levels per side.
        trades_per_sub_interval: Mean trade count per sub-interval at average volatility.
        price: Initial mid-price.
        tick: Tick size; book prices are on the tick grid.
        volatility: Long-run volatility of an interval's log return (exp(mu / 2)).
        persistence: phi, the AR(1) coefficient of the log-variance.
        activity_loading: beta, how much of next interval's log-variance the activity predicts.
        return_feedback: alpha, the GARCH-like feedback of |last return| on log-variance.
        noise: nu, the innovation of the log-variance that nothing predicts.
        seed: Seed of the whole simulation.
    """
    rng = np.random.default_rng(seed)
    T, S = intervals, sub_intervals
    mu = 2 * np.log(volatility)
    activity = rng.standard_normal(T)
    z = rng.standard_normal((T, S))
    # intraday U-shape of the variance (open and close busier), summing to one per interval
    u = np.linspace(-1, 1, S)
    weights = 1 + 0.5 * u**2
    weights /= weights.sum()
    h = np.empty(T)
    h[0] = mu
    mean_abs_normal = np.sqrt(2 / np.pi)
    for t in range(T - 1):
        # the interval's standardised return, a sum of its sub-interval shocks
        z_t = (np.sqrt(weights) * z[t]).sum()
        h[t + 1] = (
            mu
            + persistence * (h[t] - mu)
            + activity_loading * activity[t]
            + return_feedback * (abs(z_t) - mean_abs_normal)
            + noise * rng.standard_normal()
        )
    sigma = np.exp(h / 2)
    returns = sigma[:, None] * np.sqrt(weights)[None] * z  # (T, S) log mid returns
    log_mid = np.log(price) + np.concatenate([[0.0], np.cumsum(returns)])  # T*S + 1 points
    mid = np.exp(log_mid)

    # the activity ramps up within the interval: the late order flow says most about h_{t+1}
    ramp = np.linspace(0, 1, S)[None]
    standardised_vol = (h - mu)[:, None] / 2
    intensity = trades_per_sub_interval * np.exp(
        0.6 * standardised_vol + 0.5 * activity[:, None] * ramp
    )
    counts = rng.poisson(intensity).ravel()  # trades per sub-interval, (T*S,)
    sub = np.repeat(np.arange(T * S), counts)
    sub_seconds = interval_seconds / S
    fraction = rng.random(len(sub))
    order = np.lexsort((fraction, sub))
    sub, fraction = sub[order], fraction[order]
    trade_time = (sub + fraction) * sub_seconds
    trade_log_mid = log_mid[sub] + fraction * (log_mid[sub + 1] - log_mid[sub])
    # signs lean with the move of their sub-interval: buyers push the price up
    move = (returns.ravel() / (sigma.repeat(S) * np.sqrt(np.tile(weights, T))))[sub]
    trade_is_buy = rng.random(len(sub)) < 1 / (1 + np.exp(-0.8 * move))

    spread_ticks = 1 + rng.poisson(1.5 * np.exp(standardised_vol)).repeat(S)[sub]
    half_spread = 0.5 * spread_ticks * tick
    trade_mid = np.exp(trade_log_mid)
    trade_price = (
        np.where(
            trade_is_buy,
            np.ceil((trade_mid + half_spread) / tick - 1e-9),
            np.floor((trade_mid - half_spread) / tick + 1e-9),
        )
        * tick
    )
    interval_of_trade = sub // S
    log_size = (
        -1.0
        + 0.4 * activity[interval_of_trade] * ramp[0, sub % S]
        + 0.8 * rng.standard_normal(len(sub))
    )
    trade_size = np.maximum(np.round(np.exp(log_size), 3), 0.001)

    # book snapshots at every sub-interval end, just before the boundary
    book_time = (np.arange(1, T * S + 1)) * sub_seconds - 1e-3
    snap_mid = mid[1:]
    snap_spread = (1 + rng.poisson(1.5 * np.exp(standardised_vol)).repeat(S)) * tick
    best_bid = np.floor((snap_mid - snap_spread / 2) / tick + 1e-9) * tick
    best_ask = best_bid + snap_spread
    level_gap = 2 * tick
    offsets = np.arange(levels)[None] * level_gap
    bid_price = np.round((best_bid[:, None] - offsets) / tick) * tick
    ask_price = np.round((best_ask[:, None] + offsets) / tick) * tick
    # activity and volatility thin the book, late in the interval most
    thinning = np.exp(-(0.5 * activity[:, None] * ramp + 0.3 * standardised_vol)).ravel()
    depth_shape = (1 + 0.15 * np.arange(levels))[None]
    bid_size = np.round(
        5 * thinning[:, None] * depth_shape * rng.lognormal(0, 0.3, (T * S, levels)), 3
    )
    ask_size = np.round(
        5 * thinning[:, None] * depth_shape * rng.lognormal(0, 0.3, (T * S, levels)), 3
    )
    return SimulatedOrderFlow(
        trade_time=trade_time,
        trade_price=np.round(trade_price, 8),
        trade_size=trade_size,
        trade_is_buy=trade_is_buy,
        book_time=book_time,
        bid_price=np.round(bid_price, 8),
        bid_size=bid_size,
        ask_price=np.round(ask_price, 8),
        ask_size=ask_size,
        sigma=sigma,
        activity=activity,
        interval_seconds=interval_seconds,
        sub_intervals=S,
    )


def write_binance_agg_trades(
    flow: SimulatedOrderFlow, path: Path, start_ms: int = 1_600_000_000_000
) -> None:
    """The trades as a Binance aggTrades dump: agg_trade_id, price, quantity, first_trade_id,
    last_trade_id, transact_time (ms), is_buyer_maker (a sell-initiated trade), with a header."""
    n = len(flow.trade_time)
    ids = np.arange(n)
    times = start_ms + np.round(flow.trade_time * 1000).astype(np.int64)
    maker = np.where(flow.trade_is_buy, "false", "true")
    with open(path, "w") as f:
        f.write(
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
        )
        f.writelines(
            f"{i},{p:.8g},{q:.8g},{i},{i},{t},{m}\n"
            for i, p, q, t, m in zip(ids, flow.trade_price, flow.trade_size, times, maker)
        )


def write_lobster(flow: SimulatedOrderFlow, message_path: Path, book_path: Path) -> None:
    """Trades and snapshots as one LOBSTER day: a message file (time in seconds after midnight,
    type, order id, size, price x 10000, direction) and its order book file (ask price, ask size,
    bid price, bid size per level), one book row per message. Trades are visible executions
    (type 4) whose direction is the side of the resting order (-1: a sell order was hit, i.e. a
    buy); snapshots are written as limit order submissions (type 1) carrying the whole book.
    """
    n_trades, n_snaps = len(flow.trade_time), len(flow.book_time)
    times = np.concatenate([flow.trade_time, flow.book_time])
    kinds = np.concatenate([np.full(n_trades, 4), np.full(n_snaps, 1)])
    order = np.argsort(times, kind="stable")
    # each message's book is the latest snapshot at or before it (the first ones take the first)
    snap_of = np.clip(np.searchsorted(flow.book_time, times, side="right") - 1, 0, n_snaps - 1)
    levels = flow.bid_price.shape[1]
    book = np.empty((n_snaps, 4 * levels))
    book[:, 0::4] = np.round(flow.ask_price * 10000)
    book[:, 1::4] = np.round(flow.ask_size * 1000)
    book[:, 2::4] = np.round(flow.bid_price * 10000)
    book[:, 3::4] = np.round(flow.bid_size * 1000)
    with open(message_path, "w") as messages, open(book_path, "w") as books:
        for i in order:
            if kinds[i] == 4:
                size = max(1, int(round(flow.trade_size[i] * 1000)))
                price = int(round(flow.trade_price[i] * 10000))
                direction = -1 if flow.trade_is_buy[i] else 1
            else:
                size, price, direction = 1, int(book[snap_of[i], 2]), 1
            messages.write(f"{times[i]:.9f},{kinds[i]},{i},{size},{price},{direction}\n")
            books.write(",".join(str(int(v)) for v in book[snap_of[i]]) + "\n")
