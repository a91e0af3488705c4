"""Model-provider overhead: what Carrier's provider layer costs on top of the model itself.

Measured against the fake model server on 127.0.0.1 (no model time), through the official
SDKs, so the figures are the client stack: request building, HTTP, JSON/SSE parsing, retry
bookkeeping. Also token counting and prompt fitting, which run on every turn.

    .venv/bin/python bench/llm_bench.py           # full run
    .venv/bin/python bench/llm_bench.py --quick   # smaller run
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from carrier_cli.llm.anthropic_chat import AnthropicChatModel  # noqa: E402
from carrier_cli.llm.base import ChatMessage, GenerationParams  # noqa: E402
from carrier_cli.llm.openai_chat import OpenAIChatModel  # noqa: E402
from carrier_cli.llm.openai_embeddings import OpenAIEmbedder  # noqa: E402
from carrier_cli.llm.retry import RetryPolicy  # noqa: E402
from carrier_cli.llm.tokens import PromptSection, count_tokens, fit_to_budget  # noqa: E402
from tests.support.model_server import FakeModelServer, Reply  # noqa: E402

PROMPT = [
    ChatMessage("system", "You are Eliza, a helpful assistant. " * 40),
    ChatMessage("user", "Recent conversation and knowledge...\n" * 60 + "What now?"),
]


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered) * 1000:7.2f} ms  p95 {p95 * 1000:7.2f} ms"


async def timed(fn: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    await fn()  # warm up connections
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


async def bench_chat(server: FakeModelServer, runs: int) -> None:
    params = GenerationParams(model="gpt-4o-mini", max_tokens=256)
    long_reply = "word " * 200
    openai_model = OpenAIChatModel(api_key="sk-bench", base_url=server.openai_base_url)
    claude = AnthropicChatModel(api_key="sk-bench", base_url=server.anthropic_base_url)

    async def first_delta(model: OpenAIChatModel | AnthropicChatModel) -> float:
        server.push(Reply(text=long_reply))
        start = time.perf_counter()
        first = 0.0
        async for _ in model.stream(PROMPT, params):
            if not first:
                first = time.perf_counter() - start
        return first

    try:
        for label, model in (("openai", openai_model), ("anthropic", claude)):

            def complete_once(m: OpenAIChatModel | AnthropicChatModel = model) -> Awaitable[object]:
                return m.complete(PROMPT, params)

            complete = await timed(complete_once, runs)
            print(f"{label:9} complete()            {ms(complete)}")

            async def full_stream(m: OpenAIChatModel | AnthropicChatModel = model) -> None:
                server.push(Reply(text=long_reply))
                async for _ in m.stream(PROMPT, params):
                    pass

            streamed = await timed(full_stream, runs)
            print(f"{label:9} stream() 200 deltas   {ms(streamed)}")
            firsts = [await first_delta(model) for _ in range(runs)]
            print(f"{label:9} time to first delta   {ms(firsts)}")

        # Retry bookkeeping: one 500 then success, with a zero backoff.
        fast = OpenAIChatModel(
            api_key="sk-bench", base_url=server.openai_base_url, retry=RetryPolicy(base_delay=0.0)
        )

        async def one_retry() -> None:
            server.push(Reply(status=500))
            await fast.complete(PROMPT, params)

        retried = await timed(one_retry, runs)
        print(f"openai    complete() after a 500  {ms(retried)}")
        await fast.aclose()

        concurrent = max(10, runs // 2)
        start = time.perf_counter()
        await asyncio.gather(*(openai_model.complete(PROMPT, params) for _ in range(concurrent)))
        elapsed = time.perf_counter() - start
        print(
            f"openai    {concurrent} concurrent complete(): {elapsed * 1000:.1f} ms "
            f"({concurrent / elapsed:.0f} calls/s)"
        )
    finally:
        await openai_model.aclose()
        await claude.aclose()


async def bench_embeddings(server: FakeModelServer, texts: int) -> None:
    embedder = OpenAIEmbedder(api_key="sk-bench", base_url=server.openai_base_url, dimensions=256)
    corpus = [
        f"memory number {i}: the user said something about topic {i % 17}" for i in range(texts)
    ]
    try:
        start = time.perf_counter()
        vectors = await embedder.embed(corpus)
        elapsed = time.perf_counter() - start
    finally:
        await embedder.aclose()
    batches = len(server.requests("/v1/embeddings"))
    print(
        f"embeddings {len(vectors)} texts x 256 dims in {batches} requests: "
        f"{elapsed * 1000:.0f} ms ({len(vectors) / elapsed:.0f} texts/s, fake server time "
        "included)"
    )


def bench_tokens(runs: int) -> None:
    text = ("Carrier keeps long-term memory of every conversation. " * 200)[:10_000]
    start = time.perf_counter()
    for _ in range(runs):
        count_tokens(text, "gpt-4o-mini")
    per_call = (time.perf_counter() - start) / runs
    print(
        f"count_tokens 10 kB text            {per_call * 1e6:8.1f} us "
        f"({len(text) / per_call / 1e6:.0f} MB/s)"
    )

    history = PromptSection(
        "history",
        [f"(1 minute ago) User{i}: message {i} " + "x" * 120 for i in range(32)],
        "start",
        2,
        4,
    )
    memories = PromptSection("memories", [f"memory {i}: " + "y" * 300 for i in range(20)], "end", 0)
    system = "You are Eliza. " * 100
    full = fit_to_budget(system, [history, memories], "hello?", 1_000_000).tokens
    start = time.perf_counter()
    for _ in range(runs):
        fitted = fit_to_budget(system, [history, memories], "hello?", full // 2)
    per_call = (time.perf_counter() - start) / runs
    print(f"fit_to_budget 32 msgs + 20 mems    {per_call * 1e6:8.1f} us (dropped {fitted.dropped})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer repetitions.")
    args = parser.parse_args()
    runs = 20 if args.quick else 200
    server = FakeModelServer(dimension=256)
    await server.start()
    try:
        print(f"fake model server at {server.url}; {runs} runs per figure")
        await bench_chat(server, runs)
        server.reset()
        await bench_embeddings(server, 1000 if args.quick else 10_000)
    finally:
        await server.stop()
    bench_tokens(runs * 5)


if __name__ == "__main__":
    asyncio.run(main())
