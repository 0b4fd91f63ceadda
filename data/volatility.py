"""Volatility data: order flow cut into intervals, as images or sequences, with the next interval's
realised volatility as the target.

Sources (each a datamodule, all with the same representations, splits and normalisers):

- `data=order_flow` (the default): the limit-order-book simulator of data/synth/order_flow.py,
  SYNTHETIC data whose order flow leaks the coming volatility (see there).
- `data=binance_trades`: trade CSVs in the layout of Binance's aggTrades dumps (agg_trade_id,
  price, quantity, first_trade_id, last_trade_id, transact_time, is_buyer_maker), the paper's
  Bitcoin trades; with or without a header row; times in ms or us.
- `data=lobster`: LOBSTER message + order book files (the academic limit-order-book format).
- `data=bars`: plain bars, a CSV of timestamp and close (or price), optional open/high/low/volume.
- `data=usdchf`: real USD/CHF 30-minute quotes of 1996-2001 (Debian's r-cran-timeseries).

Representations (`data.representation`), built per interval of `interval_seconds` cut into
`sub_intervals` rows, over a window of the last `window` intervals:

- `image`: `(C, window * sub_intervals, price_buckets)`: rows are sub-intervals (time runs down),
  columns are price buckets relative to the interval's opening price (bucket width fitted on the
  training period: `bucket_sigmas` median interval volatilities span half the columns).
  Channels: buy volume, sell volume, trade count, and bid and ask depth summed over the book's
  levels where the source has a book; for bars: the volume spread over each bar's low..high range
  and the close. The seed paper's order-flow images.
- `sequence`: `(F, window * sub_intervals)`, one feature vector per sub-interval: return, |return|,
  buy and sell volume, trade count, imbalance (+ spread and depths with a book; range and volume
  for bars), for the 1D sequence backbones.

The target is the realised volatility of the next interval, sqrt(sum of squared sub-interval log
returns) of the mid-price (with a book), else of the last trade or close. Hand-crafted features
(`batch["features"]`, as in the paper): log realised volatility of the interval, its mean over
the last 5 and 22 intervals (HAR's), volume, trade count, imbalance (+ spread).

Splits are chronological, train -> val -> test, with `gap` samples dropped between them; every
normaliser (bucket width, channel and feature scales, the target's log-variance scale) is fitted
on the training period only, so changing the data after a time changes no input before it.
Batches: `{"image", "features", "target", "index"}`.
"""

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .base import BaseDataModule, DataError, reading
from .synth.order_flow import simulate_order_flow

Representation = Literal["image", "sequence"]

#: Intervals of history the HAR features look back (a "month" of 22 intervals).
HAR_LAGS = (1, 5, 22)


class OrderFlowFormatError(DataError):
    """A trade, book or bar file that cannot be read as it is; the message names file and row."""


@dataclass
class OrderFlow:
    """Trades, book snapshots and/or bars of one instrument, times in seconds (float64).

    Trades have `is_buy` True for buyer-initiated trades. Book arrays are (rows, levels), level 0
    the best price; empty levels have NaN prices and zero sizes.
    """

    trade_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trade_price: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trade_size: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trade_is_buy: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    book_time: np.ndarray | None = None
    bid_price: np.ndarray | None = None
    bid_size: np.ndarray | None = None
    ask_price: np.ndarray | None = None
    ask_size: np.ndarray | None = None
    bar_time: np.ndarray | None = None
    bar_high: np.ndarray | None = None
    bar_low: np.ndarray | None = None
    bar_close: np.ndarray | None = None
    bar_volume: np.ndarray | None = None

    @property
    def has_book(self) -> bool:
        return self.book_time is not None and len(self.book_time) > 0

    @property
    def has_bars(self) -> bool:
        return self.bar_time is not None and len(self.bar_time) > 0

    def price_path(self) -> tuple[np.ndarray, np.ndarray]:
        """(times, prices) that realised volatility is measured on: mids, else closes, else trades."""
        if self.has_book:
            mid = 0.5 * (self.bid_price[:, 0] + self.ask_price[:, 0])
            keep = np.isfinite(mid)
            return self.book_time[keep], mid[keep]
        if self.has_bars:
            return self.bar_time, self.bar_close
        return self.trade_time, self.trade_price


# --------------------------------------------------------------------------------------------
# readers


def _check_rows(path: Path, columns: dict[str, np.ndarray], first_line: int, time_key: str) -> None:
    """Non-finite values and rows out of time order are errors naming the file and line."""
    for name, values in columns.items():
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad.reshape(len(values), -1).any(1)))
            raise OrderFlowFormatError(
                f"{path}: line {first_line + row}: column {name!r} is not a finite number"
            )
    times = columns[time_key]
    back = np.diff(times) < 0
    if back.any():
        row = int(np.argmax(back)) + 1
        raise OrderFlowFormatError(
            f"{path}: line {first_line + row}: rows out of time order ({time_key} "
            f"{times[row]!r} after {times[row - 1]!r}); sort the file by time"
        )


def _numeric(path: Path, frame: pd.DataFrame, name: str, first_line: int) -> np.ndarray:
    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise OrderFlowFormatError(
            f"{path}: line {first_line + row}: column {name!r} is {frame[name].iloc[row]!r}, "
            "not a finite number"
        )
    return values


def _read_csv(path: Path, header: int | None = 0) -> pd.DataFrame:
    """All cells as text, each column checked by its reader; an unreadable file names itself."""
    try:
        frame = pd.read_csv(path, header=header, dtype=str)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise OrderFlowFormatError(f"{path}: not a readable CSV file ({error})") from error
    if frame.empty:
        raise OrderFlowFormatError(f"{path}: no data rows")
    return frame


def _has_header(path: Path) -> bool:
    with open(path, errors="replace") as f:
        first = f.readline().split(",")[0].strip()
    try:
        float(first)
    except ValueError:
        return True
    return False


BINANCE_COLUMNS = (
    "agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
    "is_buyer_maker",
)  # fmt: skip


def read_binance_agg_trades(path: str | Path) -> OrderFlow:
    """Read a Binance aggTrades CSV (with or without its header row); times in ms or us.

    `is_buyer_maker` true means the resting order was the buyer's: the trade was sell-initiated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trade file at {str(path)!r}")
    header = _has_header(path)
    frame = _read_csv(path, header=0 if header else None)
    if not header:
        if frame.shape[1] < len(BINANCE_COLUMNS):
            raise OrderFlowFormatError(
                f"{path}: {frame.shape[1]} columns, expected the {len(BINANCE_COLUMNS)} of an "
                f"aggTrades dump: {', '.join(BINANCE_COLUMNS)}"
            )
        frame = frame.iloc[:, : len(BINANCE_COLUMNS)]
        frame.columns = list(BINANCE_COLUMNS)
    frame.columns = [c.strip().lower() for c in frame.columns]
    missing = [
        c for c in ("price", "quantity", "transact_time", "is_buyer_maker") if c not in frame
    ]
    if missing:
        raise OrderFlowFormatError(f"{path}: missing column(s) {', '.join(missing)}")
    first_line = 2 if header else 1
    maker = frame["is_buyer_maker"].str.strip().str.lower()
    bad = ~maker.isin(["true", "false"])
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise OrderFlowFormatError(
            f"{path}: line {first_line + row}: is_buyer_maker is {frame['is_buyer_maker'].iloc[row]!r}, "
            "expected true or false"
        )
    raw_time = _numeric(path, frame, "transact_time", first_line)
    # Binance moved its spot dumps from milliseconds to microseconds in 2025
    scale = 1e6 if len(raw_time) and np.median(raw_time) > 1e14 else 1e3
    columns = {
        "transact_time": raw_time / scale,
        "price": _numeric(path, frame, "price", first_line),
        "quantity": _numeric(path, frame, "quantity", first_line),
    }
    _check_rows(path, columns, first_line, "transact_time")
    return OrderFlow(
        trade_time=columns["transact_time"],
        trade_price=columns["price"],
        trade_size=columns["quantity"],
        trade_is_buy=(maker == "false").to_numpy(),
    )


#: LOBSTER pads empty book levels with these prices (x 10000) and size 0.
LOBSTER_EMPTY = 9_999_999_999


def read_lobster(
    message_path: str | Path, book_path: str | Path, date: str | None = None
) -> OrderFlow:
    """Read one LOBSTER day: its message file and its order book file (one row per message).

    Trades are executions of visible (type 4) and hidden (type 5) orders; the direction of an
    execution is the side of the resting order, so -1 (a sell limit order was hit) is a buy.
    Prices are dollars x 10000. `date` (YYYY-MM-DD; read from LOBSTER's file name when None)
    places the day's seconds after midnight on a common clock across days.
    """
    message_path, book_path = Path(message_path), Path(book_path)
    for p in (message_path, book_path):
        if not p.is_file():
            raise FileNotFoundError(f"no LOBSTER file at {str(p)!r}")
    messages = _read_csv(message_path, header=None)
    if messages.shape[1] < 6:
        raise OrderFlowFormatError(
            f"{message_path}: {messages.shape[1]} columns; a LOBSTER message file has 6: time, "
            "type, order id, size, price, direction"
        )
    messages = messages.iloc[:, :6]
    messages.columns = ["time", "type", "order_id", "size", "price", "direction"]
    book_frame = _read_csv(book_path, header=None)
    book = np.stack([_numeric(book_path, book_frame, c, 1) for c in book_frame.columns], 1)
    if book.shape[1] % 4:
        raise OrderFlowFormatError(
            f"{book_path}: {book.shape[1]} columns, not 4 per level (ask price, ask size, bid "
            "price, bid size)"
        )
    if len(book) != len(messages):
        raise OrderFlowFormatError(
            f"{book_path}: {len(book)} rows but {message_path.name} has {len(messages)} messages; "
            "LOBSTER writes one book row per message"
        )
    columns = {
        k: _numeric(message_path, messages, k, 1)
        for k in ("time", "type", "size", "price", "direction")
    }
    _check_rows(message_path, columns, 1, "time")
    if date is None:
        found = re.search(r"(\d{4}-\d{2}-\d{2})", message_path.name)
        date = found.group(1) if found else None
    offset = pd.Timestamp(date).timestamp() if date else 0.0
    time = columns["time"] + offset
    executed = np.isin(columns["type"], (4, 5))
    prices = book[:, 0::2] / 10000
    empty = np.abs(book[:, 0::2]) >= LOBSTER_EMPTY
    prices[empty] = np.nan
    sizes = np.where(empty, 0.0, book[:, 1::2])
    return OrderFlow(
        trade_time=time[executed],
        trade_price=columns["price"][executed] / 10000,
        trade_size=columns["size"][executed],
        trade_is_buy=columns["direction"][executed] == -1,
        book_time=time,
        ask_price=prices[:, 0::2],
        ask_size=sizes[:, 0::2],
        bid_price=prices[:, 1::2],
        bid_size=sizes[:, 1::2],
    )


def read_bars(path: str | Path) -> OrderFlow:
    """Read bars: a timestamp column (`timestamp`, `time`, `date`, `datetime`, or the first
    column; epoch seconds or date-time text), `close` or `price`, optional `high`, `low`,
    `volume`. Each bar is observed at its timestamp."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no bar file at {str(path)!r}")
    frame = _read_csv(path)
    frame.columns = [c.strip().lower() for c in frame.columns]
    time_col = next(
        (c for c in ("timestamp", "time", "datetime", "date") if c in frame), frame.columns[0]
    )
    price_col = next((c for c in ("close", "price") if c in frame), None)
    if price_col is None:
        raise OrderFlowFormatError(
            f"{path}: missing column 'close' (or 'price'); columns are {', '.join(frame.columns)}"
        )
    stamps = pd.to_numeric(frame[time_col], errors="coerce")
    if stamps.isna().any():
        parsed = pd.to_datetime(frame[time_col], errors="coerce", utc=True)
        if parsed.isna().any():
            row = int(np.argmax(parsed.isna().to_numpy()))
            raise OrderFlowFormatError(
                f"{path}: line {row + 2}: {time_col} {frame[time_col].iloc[row]!r} is not a time"
            )
        stamps = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    columns = {"time": stamps.to_numpy(np.float64), price_col: _numeric(path, frame, price_col, 2)}
    for optional in ("high", "low", "volume"):
        if optional in frame:
            columns[optional] = _numeric(path, frame, optional, 2)
    _check_rows(path, columns, 2, "time")
    close = columns[price_col]
    return OrderFlow(
        bar_time=columns["time"],
        bar_close=close,
        bar_high=columns.get("high", close),
        bar_low=columns.get("low", close),
        bar_volume=columns.get("volume"),
    )


# --------------------------------------------------------------------------------------------
# intervals, representations and normalisers


@dataclass
class Intervals:
    """Per-interval quantities of an `OrderFlow` on a grid of intervals x sub-intervals.

    `active` intervals have enough observations to measure a volatility (markets close, feeds
    stop); windows and targets run over the active intervals in order.
    """

    start: np.ndarray  # (n,) start time of every interval of the grid
    log_price: np.ndarray  # (n, S + 1) as-of log price at the sub-interval boundaries
    returns: np.ndarray  # (n, S) sub-interval log returns (0 across stale gaps)
    active: np.ndarray  # (n,) bool
    sub_intervals: int
    interval_seconds: float

    @property
    def realised_volatility(self) -> np.ndarray:
        return np.sqrt((self.returns**2).sum(1))


def make_intervals(
    flow: OrderFlow, interval_seconds: float, sub_intervals: int, min_coverage: float = 0.5
) -> Intervals:
    """Cut `flow` into intervals; prices are sampled as-of every sub-interval boundary."""
    times, prices = flow.price_path()
    if len(times) < 2:
        raise ValueError("the order flow has fewer than two prices: nothing to measure")
    S, dt = sub_intervals, interval_seconds / sub_intervals
    t0 = np.floor(times[0] / interval_seconds) * interval_seconds
    n = int((times[-1] - t0) // interval_seconds) + 1
    grid = t0 + np.arange(n * S + 1) * dt
    last = np.searchsorted(times, grid, side="right") - 1
    seen = last >= 0
    log_price = np.where(seen, np.log(prices[np.maximum(last, 0)]), np.nan)
    age = np.where(seen, grid - times[np.maximum(last, 0)], np.inf)
    returns = np.diff(log_price)
    # a return across a pause longer than an interval (a weekend, a halt) is not volatility
    stale = ~np.isfinite(returns) | (age[:-1] > interval_seconds)
    returns = np.where(stale, 0.0, returns).reshape(n, S)
    # boundary prices are as-of at the start of each sub-interval, plus the interval's close
    boundaries = np.concatenate([log_price[:-1].reshape(n, S), log_price[S::S][:, None]], 1)
    sub_of_obs = ((times - t0) // dt).astype(np.int64)
    covered = (np.bincount(sub_of_obs, minlength=n * S)[: n * S] > 0).reshape(n, S).mean(1)
    active = (covered >= min_coverage) & ((returns**2).sum(1) > 0)
    return Intervals(
        start=t0 + np.arange(n) * interval_seconds,
        log_price=boundaries,
        returns=returns,
        active=active,
        sub_intervals=S,
        interval_seconds=interval_seconds,
    )


def opening_log_price(intervals: Intervals) -> np.ndarray:
    """Each interval's reference price: its first finite boundary price (the open)."""
    finite = np.isfinite(intervals.log_price)
    first = np.argmax(finite, 1)
    return intervals.log_price[np.arange(len(first)), first]


def _locate(intervals: Intervals, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(interval, sub-interval, inside-the-grid mask) of each time."""
    S = intervals.sub_intervals
    dt = intervals.interval_seconds / S
    k = np.floor((times - intervals.start[0]) / dt).astype(np.int64)
    inside = (k >= 0) & (k < len(intervals.start) * S)
    k = np.where(inside, k, 0)
    return k // S, k % S, inside


class OrderFlowChannels:
    """Images (n, C, S, B) and sequence features (n, F, S) of every interval of the grid."""

    def __init__(
        self, flow: OrderFlow, intervals: Intervals, price_buckets: int, bucket_width: float
    ):
        self.flow, self.intervals = flow, intervals
        self.B, self.width = price_buckets, bucket_width
        self.reference = opening_log_price(intervals)
        n, S = len(intervals.start), intervals.sub_intervals
        self.n, self.S = n, S

    def _bucket(self, interval: np.ndarray, price: np.ndarray) -> np.ndarray:
        offset = (np.log(price) - self.reference[interval]) / self.width
        return np.clip(np.floor(offset).astype(np.int64) + self.B // 2, 0, self.B - 1)

    def _accumulate(self, interval, sub, bucket, weights) -> np.ndarray:
        flat = (interval * self.S + sub) * self.B + bucket
        counts = np.bincount(flat, weights=weights, minlength=self.n * self.S * self.B)
        return counts.reshape(self.n, self.S, self.B)

    def channel_names(self) -> list[str]:
        names = []
        if len(self.flow.trade_time):
            names += ["buy volume", "sell volume", "trade count"]
        if self.flow.has_book:
            names += ["bid depth", "ask depth"]
        if self.flow.has_bars:
            names += ["bar range volume", "close"]
        return names

    def images(self) -> np.ndarray:
        """Raw channel values (volumes, counts, depths), before log and standardisation."""
        flow, channels = self.flow, []
        if len(flow.trade_time):
            t, s, inside = _locate(self.intervals, flow.trade_time)
            t, s = t[inside], s[inside]
            b = self._bucket(t, flow.trade_price[inside])
            size, buy = flow.trade_size[inside], flow.trade_is_buy[inside]
            channels += [
                self._accumulate(t, s, b, size * buy),
                self._accumulate(t, s, b, size * ~buy),
                self._accumulate(t, s, b, np.ones_like(size)),
            ]
        if flow.has_book:
            # the book as it stands at the end of each sub-interval
            ends = self.intervals.start[:, None] + (
                np.arange(1, self.S + 1) * self.intervals.interval_seconds / self.S
            )
            row = np.searchsorted(flow.book_time, ends.ravel(), side="right") - 1
            ok = row >= 0
            row = np.maximum(row, 0)
            t, s = np.divmod(np.arange(self.n * self.S), self.S)
            for prices, sizes in ((flow.bid_price, flow.bid_size), (flow.ask_price, flow.ask_size)):
                p, q = prices[row], sizes[row] * ok[:, None]
                valid = np.isfinite(p) & (q > 0)
                tt, ss = (
                    np.broadcast_to(t[:, None], p.shape)[valid],
                    np.broadcast_to(s[:, None], p.shape)[valid],
                )
                channels.append(self._accumulate(tt, ss, self._bucket(tt, p[valid]), q[valid]))
        if flow.has_bars:
            t, s, inside = _locate(self.intervals, flow.bar_time)
            t, s = t[inside], s[inside]
            low = self._bucket(t, flow.bar_low[inside])
            high = self._bucket(t, flow.bar_high[inside])
            volume = flow.bar_volume[inside] if flow.bar_volume is not None else np.ones(len(t))
            # spread each bar's volume evenly over its low..high buckets, via a cumulative sum
            per_bucket = volume / (high - low + 1)
            edges = np.zeros((self.n * self.S, self.B + 1))
            np.add.at(edges, (t * self.S + s, low), per_bucket)
            np.add.at(edges, (t * self.S + s, high + 1), -per_bucket)
            channels.append(np.cumsum(edges, 1)[:, : self.B].reshape(self.n, self.S, self.B))
            close = self._bucket(t, flow.bar_close[inside])
            channels.append(self._accumulate(t, s, close, np.ones(len(t))))
        return np.stack(channels, 1).astype(np.float32)

    def sequence_names(self) -> list[str]:
        names = ["return", "abs return"]
        if len(self.flow.trade_time):
            names += ["buy volume", "sell volume", "trade count", "imbalance"]
        if self.flow.has_book:
            names += ["spread", "bid depth", "ask depth"]
        if self.flow.has_bars:
            names += ["range", "bar volume"]
        return names

    def sequences(self, images: np.ndarray) -> np.ndarray:
        """Per-sub-interval features (n, F, S), from the returns and the images' row sums."""
        returns = self.intervals.returns
        rows = images.sum(-1)  # (n, C, S)
        features = [returns, np.abs(returns)]
        c = 0
        if len(self.flow.trade_time):
            buy, sell, count = rows[:, 0], rows[:, 1], rows[:, 2]
            features += [
                np.log1p(buy),
                np.log1p(sell),
                np.log1p(count),
                (buy - sell) / (buy + sell + 1e-9),
            ]
            c = 3
        if self.flow.has_book:
            ends = self.intervals.start[:, None] + (
                np.arange(1, self.S + 1) * self.intervals.interval_seconds / self.S
            )
            row = np.maximum(
                np.searchsorted(self.flow.book_time, ends.ravel(), side="right") - 1, 0
            )
            bid, ask = self.flow.bid_price[row, 0], self.flow.ask_price[row, 0]
            spread = np.nan_to_num(2 * (ask - bid) / (ask + bid)).reshape(self.n, self.S)
            features += [spread, np.log1p(rows[:, c]), np.log1p(rows[:, c + 1])]
            c += 2
        if self.flow.has_bars:
            t, s, inside = _locate(self.intervals, self.flow.bar_time)
            span = np.zeros(self.n * self.S)
            np.maximum.at(span, t[inside] * self.S + s[inside],
                          np.log(self.flow.bar_high[inside] / self.flow.bar_low[inside]))  # fmt: skip
            features += [span.reshape(self.n, self.S), np.log1p(rows[:, c])]
        return np.stack(features, 1).astype(np.float32)


def hand_crafted_features(
    intervals: Intervals, images: np.ndarray, active: np.ndarray, has_trades: bool
) -> np.ndarray:
    """Per active interval: log RV, its HAR means over 5 and 22 intervals, log volume, log trade
    count and imbalance (when there are trades). Rows follow `active` (indices into the grid)."""
    log_rv = np.log(intervals.realised_volatility[active])
    columns = [log_rv]
    for lag in HAR_LAGS[1:]:
        # mean over the last `lag` active intervals; the first ones average what exists
        cumulative = np.concatenate([[0.0], np.cumsum(log_rv)])
        idx = np.arange(len(log_rv))
        lo = np.maximum(idx + 1 - lag, 0)
        columns.append((cumulative[idx + 1] - cumulative[lo]) / (idx + 1 - lo))
    if has_trades:
        totals = images[active].sum((2, 3))
        buy, sell, count = totals[:, 0], totals[:, 1], totals[:, 2]
        columns += [np.log1p(buy + sell), np.log1p(count), (buy - sell) / (buy + sell + 1e-9)]
    return np.stack(columns, 1).astype(np.float32)


class Standardiser:
    """Mean and std per channel, fitted on training rows only."""

    def __init__(self, values: np.ndarray, axes: tuple[int, ...]):
        self.mean = values.mean(axes, keepdims=True)
        self.std = values.std(axes, keepdims=True) + 1e-6

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean[0]) / self.std[0]).astype(np.float32)


class VolatilityDataset(Dataset):
    """Pre-built inputs of one split: windows, hand-crafted features, targets, sample indices."""

    def __init__(
        self,
        inputs: torch.Tensor,
        features: torch.Tensor,
        targets: torch.Tensor,
        index: torch.Tensor,
    ):
        self.inputs, self.features, self.targets, self.index = inputs, features, targets, index

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "image": self.inputs[i],
            "features": self.features[i],
            "target": self.targets[i],
            "index": self.index[i],
        }


# --------------------------------------------------------------------------------------------
# datamodules


class VolatilityDataModule(BaseDataModule):
    """Shared windows, splits and normalisers; subclasses read their source in `_load()`.

    Args:
        interval_seconds: Length of an interval (the unit whose volatility is predicted).
        sub_intervals: Rows per interval (time resolution of the image and the sequence).
        window: Past intervals in one input.
        representation: `image` (C, rows, price buckets) or `sequence` (features, rows).
        price_buckets: Columns of the image.
        bucket_sigmas: Median interval volatilities spanned by half the image's columns.
        image_size: Resize images to this square side (None: rows x buckets as built).
        split_fractions: (train, val) fractions of the samples; test is the rest.
        gap: Samples dropped between consecutive splits (at least `window`).
        min_coverage: Fraction of sub-intervals with data for an interval to count.
        **kwargs: See `BaseDataModule` (the backbone's mean/std are not used: order flow is
            standardised with statistics of its own training period).
    """

    task = "volatility"

    def __init__(
        self,
        interval_seconds: float = 600.0,
        sub_intervals: int = 16,
        window: int = 2,
        representation: Representation = "image",
        price_buckets: int = 32,
        bucket_sigmas: float = 3.0,
        image_size: int | None = None,
        split_fractions: tuple[float, float] = (0.7, 0.15),
        gap: int | None = None,
        min_coverage: float = 0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if representation not in ("image", "sequence"):
            raise ValueError(
                f"data.representation must be 'image' or 'sequence', got {representation!r}"
            )
        self.interval_seconds, self.sub_intervals = float(interval_seconds), sub_intervals
        self.window, self.representation = window, representation
        self.price_buckets, self.bucket_sigmas = price_buckets, bucket_sigmas
        self.image_size = image_size
        self.split_fractions = tuple(split_fractions)
        self.gap = max(window, gap if gap is not None else window)
        self.min_coverage = min_coverage
        self._built = False

    def _load(self) -> OrderFlow:
        raise NotImplementedError

    # the shape of the data is known only once it is read: read it on first use
    def _ensure_built(self) -> None:
        if not self._built:
            self._build()
            self._built = True

    @property
    def in_chans(self) -> int:
        self._ensure_built()
        return len(self.channel_names)

    @property
    def num_features(self) -> int:
        self._ensure_built()
        return self.features_all.shape[1]

    @property
    def task_kwargs(self) -> dict:
        self._ensure_built()
        return {
            "in_chans": self.in_chans,
            "num_features": self.num_features,
            "target_mean": float(self.target_scale[0]),
            "target_std": float(self.target_scale[1]),
            "representation": self.representation,
            "channel_names": list(self.channel_names),
        }

    def _split_samples(self, count: int) -> dict[str, np.ndarray]:
        """Chronological split of sample positions with `gap` dropped between splits."""
        first = max(self.window, HAR_LAGS[-1]) - 1
        samples = np.arange(first, count - 1)  # the last interval has no next one
        n = len(samples)
        n_train, n_val = int(self.split_fractions[0] * n), int(self.split_fractions[1] * n)
        splits = {
            "train": samples[:n_train],
            "val": samples[n_train + self.gap : n_train + n_val],
            "test": samples[n_train + n_val + self.gap :],
        }
        empty = [s for s, idx in splits.items() if len(idx) == 0]
        if empty:
            raise ValueError(
                f"{count} active intervals leave no {'/'.join(empty)} samples after the "
                f"{HAR_LAGS[-1]}-interval warm-up and gap={self.gap}: use more data or shorter "
                "data.interval_seconds"
            )
        return splits

    def _build(self) -> None:
        flow = self._load()
        grid = make_intervals(flow, self.interval_seconds, self.sub_intervals, self.min_coverage)
        self.active = np.flatnonzero(grid.active)
        self.splits = self._split_samples(len(self.active))
        rv = grid.realised_volatility[self.active]
        train_inputs = self.splits["train"][:, None] - np.arange(self.window)[None]
        # bucket width from the training period: the median interval volatility, so that
        # `bucket_sigmas` of it span half of the columns
        width = (
            self.bucket_sigmas * np.median(rv[np.unique(train_inputs)]) / (self.price_buckets / 2)
        )
        builder = OrderFlowChannels(flow, grid, self.price_buckets, width)
        raw = builder.images()
        self.channel_names = builder.channel_names()
        train_rows = np.unique(train_inputs)
        sequences = builder.sequences(raw)[self.active]
        # the sequence view is kept whatever the representation: the MLP baseline reads it
        self.sequences_all = Standardiser(sequences[train_rows], (0, 2))(sequences)
        if self.representation == "image":
            values = np.log1p(raw[self.active])
            self.inputs_all = Standardiser(values[train_rows], (0, 2, 3))(values)
            self.input_names = self.channel_names
        else:
            self.inputs_all = self.sequences_all
            self.input_names = self.channel_names = builder.sequence_names()
        features = hand_crafted_features(grid, raw, self.active, len(flow.trade_time) > 0)
        self.features_all = Standardiser(features[self.splits["train"]], (0,))(features)
        self.rv = rv
        self.interval_returns = np.nansum(grid.returns[self.active], 1)
        self.interval_start = grid.start[self.active]
        log_var = 2 * np.log(rv[self.splits["train"] + 1])
        self.target_scale = (log_var.mean(), log_var.std() + 1e-6)
        self.grid, self.flow = grid, flow

    def window_inputs(self, samples: np.ndarray, values: np.ndarray | None = None) -> torch.Tensor:
        """Inputs of `samples`: their last `window` intervals stacked along the rows (time)."""
        values = self.inputs_all if values is None else values
        rows = samples[:, None] - np.arange(self.window - 1, -1, -1)[None]
        x = torch.from_numpy(values[rows])  # (n, W, C, S[, B])
        x = x.transpose(1, 2).flatten(2, 3)  # (n, C, W*S[, B])
        if x.ndim == 4 and self.image_size and x.shape[-2:] != (self.image_size,) * 2:
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        return x.contiguous()

    def setup(self, stage: str | None = None) -> None:
        self._ensure_built()
        if self.datasets:
            return
        for split, samples in self.splits.items():
            self.datasets[split] = VolatilityDataset(
                self.window_inputs(samples),
                torch.from_numpy(self.features_all[samples]),
                torch.from_numpy(self.rv[samples + 1]).float(),
                torch.from_numpy(samples),
            )

    def baseline_inputs(self) -> dict[str, np.ndarray]:
        """What the baselines need, on the same samples as the model (tasks/baselines.py)."""
        self._ensure_built()
        # the MLP's "raw data": the window's per-sub-interval features, flattened
        flat = {
            s: self.window_inputs(idx, self.sequences_all).flatten(1).numpy()
            for s, idx in self.splits.items()
        }
        return {
            "rv": self.rv,
            "returns": self.interval_returns,
            **{f"{s}_samples": idx for s, idx in self.splits.items()},
            **{
                f"{s}_inputs": np.concatenate([flat[s], self.features_all[idx]], 1)
                for s, idx in self.splits.items()
            },  # fmt: skip
        }

    def plot_channels(self, image: torch.Tensor) -> list[tuple[str, np.ndarray]]:
        """(name, 2D array) per channel of one input, for figures."""
        return list(zip(self.input_names, image.float().cpu().numpy()))


class SimulatedOrderFlowDataModule(VolatilityDataModule):
    """The embedded default: SYNTHETIC order flow from data/synth/order_flow.py, seeded.

    Args:
        intervals: Intervals simulated (3000 x 10 minutes: about 21 days of trading).
        levels: Book levels per side.
        **kwargs: See `VolatilityDataModule`.
    """

    def __init__(self, intervals: int = 3000, levels: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.intervals, self.levels = intervals, levels

    def _load(self) -> OrderFlow:
        sim = simulate_order_flow(
            intervals=self.intervals,
            sub_intervals=self.sub_intervals,
            interval_seconds=self.interval_seconds,
            levels=self.levels,
            seed=self.seed,
        )
        return OrderFlow(
            trade_time=sim.trade_time,
            trade_price=sim.trade_price,
            trade_size=sim.trade_size,
            trade_is_buy=sim.trade_is_buy,
            book_time=sim.book_time,
            bid_price=sim.bid_price,
            bid_size=sim.bid_size,
            ask_price=sim.ask_price,
            ask_size=sim.ask_size,
        )


def _concatenate(flows: list[OrderFlow]) -> OrderFlow:
    """Files of consecutive periods as one flow (each must start after the previous ends)."""
    if len(flows) == 1:
        return flows[0]
    merged = {}
    for key in OrderFlow.__dataclass_fields__:
        parts = [getattr(f, key) for f in flows]
        merged[key] = None if any(p is None for p in parts) else np.concatenate(parts)
    return OrderFlow(**merged)


def _glob(pattern: str) -> list[Path]:
    path = Path(pattern).expanduser()
    files = sorted(path.parent.glob(path.name)) if any(c in path.name for c in "*?[") else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no files match data.path={pattern!r}")
    return files


class BinanceTradesDataModule(VolatilityDataModule):
    """Binance aggTrades CSVs (`data.path` a file or a glob of consecutive days), no book."""

    input_keys = ("path",)

    def __init__(self, path: str, **kwargs):
        super().__init__(**kwargs)
        self.path = path

    def _load(self) -> OrderFlow:
        return _concatenate([read_binance_agg_trades(p) for p in _glob(self.path)])


class LobsterDataModule(VolatilityDataModule):
    """LOBSTER days: `data.path` globs the message files; each `*_message_*` has its
    `*_orderbook_*` beside it."""

    input_keys = ("path",)

    def __init__(self, path: str, **kwargs):
        super().__init__(**kwargs)
        self.path = path

    def _load(self) -> OrderFlow:
        flows = []
        for message in _glob(self.path):
            book = message.with_name(message.name.replace("message", "orderbook"))
            flows.append(read_lobster(message, book))
        return _concatenate(flows)


class BarsDataModule(VolatilityDataModule):
    """Bars from a CSV (`data.path`): timestamp, open/high/low/close or price, optional volume."""

    input_keys = ("path",)

    def __init__(self, path: str, **kwargs):
        super().__init__(**kwargs)
        self.path = path

    def _load(self) -> OrderFlow:
        return _concatenate([read_bars(p) for p in _glob(self.path)])


def read_r_lazyload(index: Path, name: str) -> tuple[np.ndarray, dict]:
    """Object `name` of an R package's lazy-load data base (`Rdata.rdx` + `Rdata.rdb`), with its
    attributes, by the `rdata` package: the index maps names to (offset, length) of zlib blocks
    (a 4-byte length, then the serialised object) in the .rdb file."""
    import zlib

    import rdata

    offsets = rdata.read_rds(index)["variables"]
    if name not in offsets:
        raise KeyError(f"{index}: no object {name!r}; it has {', '.join(map(str, offsets))}")
    offset, length = (int(v) for v in offsets[name])
    with open(index.with_suffix(".rdb"), "rb") as f:
        f.seek(offset)
        block = f.read(length)
    parsed = rdata.parser.parse_data(zlib.decompress(block[4:]))
    # timeSeries is an S4 class rdata has no constructor for: keep its values and slots
    classes = {**rdata.conversion.DEFAULT_CLASS_MAP, "timeSeries": lambda obj, attrs: (obj, attrs)}
    values, attributes = rdata.conversion.convert(parsed, classes)
    return np.asarray(values), attributes


class USDCHFDataModule(VolatilityDataModule):
    """USD/CHF 30-minute quotes, 1996-2001 (62,496 bars; real data): R timeSeries' `USDCHF` as
    Debian's `r-cran-timeseries` ships it, read with the `rdata` package (no R needed). Predicts
    a day's realised volatility from its 30-minute returns.

    Install it with `apt-get install r-cran-timeseries`, or unpack the .deb into `cache_dir`.

    Args:
        cache_dir: Where an unpacked copy of the package is looked for (besides the installed one).
        **kwargs: See `VolatilityDataModule` (interval_seconds 86400, sub_intervals 48).
    """

    def __init__(self, cache_dir: str = "~/.cache/convzoo/usdchf", **kwargs):
        kwargs.setdefault("interval_seconds", 86400.0)
        kwargs.setdefault("sub_intervals", 48)
        super().__init__(**kwargs)
        self.cache_dir = Path(cache_dir).expanduser()

    def _find_index(self) -> Path | None:
        roots = [self.cache_dir, Path("/usr/lib/R/site-library/timeSeries")]
        return next(
            (p for r in roots if r.exists() for p in sorted(r.rglob("timeSeries/data/Rdata.rdx"))),
            None,
        )

    def prepare_data(self) -> None:
        # nothing is downloaded at run time: the data comes with a Debian package
        if self._find_index() is None:
            raise FileNotFoundError(
                "data=usdchf reads R timeSeries' USDCHF from Debian's r-cran-timeseries, which is "
                "not installed: run `sudo apt-get install r-cran-timeseries`, or unpack the .deb "
                f"(`apt-get download r-cran-timeseries && dpkg-deb -x r-cran-timeseries_*.deb "
                f"{self.cache_dir}`)"
            )

    def _load(self) -> OrderFlow:
        self.prepare_data()
        try:
            import rdata  # noqa: F401
        except ImportError as error:
            raise ImportError("data=usdchf reads R data with `pip install rdata`") from error
        index = self._find_index()
        with reading(index):
            values, attributes = read_r_lazyload(index, "USDCHF")
        times = np.asarray(attributes["positions"], dtype=np.float64).ravel()
        with tempfile.TemporaryDirectory() as folder:
            # through read_bars, so the file-level checks apply to this source as to any bars
            path = Path(folder) / "usdchf.csv"
            pd.DataFrame({"timestamp": times, "close": values.ravel()}).to_csv(path, index=False)
            return read_bars(path)
