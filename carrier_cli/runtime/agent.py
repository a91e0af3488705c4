"""The agent runtime: one character, its memory, its models and plugins, turn after turn.

`AgentRuntime` is the public class and the orchestrator; each stage of a turn is its own
module under `runtime/turn/` and every prompt is built in `runtime/prompts.py`. A turn
(see docs/plugins.md for the full walk-through), as `_respond` runs it:
1. intake: ensure entity/room/participant (cached), store the message with its embedding
   under a deterministic id when the platform gives a message id;
2. decide: rules (bots, direct, mentions, client rules), else the small model;
3. compose: recent messages, relevant knowledge, facts about the sender, plugin providers
   and the offered actions, read concurrently; character parts come pre-rendered;
4. generate with the large model, parse tolerantly (a reply without tags is the text); only
   broken markup is asked again, once (parsing.ParseAttempts), then the raw text;
5. act: store the reply, run the chosen actions; 6. evaluate: evaluators in the background.

Cancellation policy: the incoming message is stored before anything can be cancelled; a
turn cancelled before its reply is stored leaves no reply memory (never half a reply); once
storing the reply has begun it is shielded and completes, so a replay of the same platform
message returns that reply instead of generating a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import UTC, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from carrier_cli import metrics as metrics_mod
from carrier_cli.llm.base import ChatModel
from carrier_cli.memory.types import Memory, MemoryKind, Room, stable_id
from carrier_cli.runtime import prompts
from carrier_cli.runtime.character_state import CharacterState
from carrier_cli.runtime.context import TurnContext
from carrier_cli.runtime.events import AgentEvent, EventBus, message_data, room_ref
from carrier_cli.runtime.outgoing import OutgoingFile, describe_file, embed_json
from carrier_cli.runtime.plugins import (
    Action,
    Evaluator,
    Plugin,
    Provider,
    discover_plugins,
    normalize_action_name,
    with_builtins,
)
from carrier_cli.runtime.rooms import RoomGates, TurnHooks
from carrier_cli.runtime.should_respond import name_pattern
from carrier_cli.runtime.templates import resolve_templates
from carrier_cli.runtime.turn import act, compose, decide, evaluate, generate, intake
from carrier_cli.runtime.turn.calls import call_context
from carrier_cli.runtime.turn.ids import reply_id
from carrier_cli.runtime.turn.replay import Replays
from carrier_cli.runtime.turn.state import Intake, TurnState
from carrier_cli.runtime.types import IncomingMessage, PromptRecord, TurnEvent, TurnLog, TurnResult
from carrier_cli.text import one_line
from carrier_cli.usage.budget import BudgetGate, BudgetRefused
from carrier_cli.usage.meter import UsageMeter
from carrier_cli.usage.records import CallObserver, calling, observer_lists, using

if TYPE_CHECKING:
    from carrier_cli.character.model import Character
    from carrier_cli.config import Settings
    from carrier_cli.llm.factory import ModelConfig
    from carrier_cli.memory.store import MemoryStore
    from carrier_cli.usage.budget_meter import BudgetMeter

log = logging.getLogger("carrier.runtime")
turn_log = logging.getLogger("carrier.runtime.turn")


class AgentRuntime:
    """Usable as a library: `await AgentRuntime.create(character, settings)`, then
    `await runtime.handle_message(IncomingMessage(...))` per message."""

    recent_count = 32
    knowledge_k = 5
    knowledge_threshold = 0.35
    sender_fact_limit = 12
    fact_cache_ttl = 60.0  # seconds
    plugin_timeout = 10.0  # seconds for a provider's get() or an action's validate()
    evaluator_timeout = 180.0  # seconds for one evaluator (it may call the model)
    turn_log_history = 50

    def __init__(
        self,
        character: Character,
        *,
        store: MemoryStore,
        model: ChatModel,
        model_config: ModelConfig,
        agent_id: uuid.UUID,
        plugins: Sequence[Plugin] = (),
        owns_store: bool = False,
        owns_model: bool = False,
        rng: random.Random | None = None,
        usage: UsageMeter | None = None,
        budget: BudgetGate | None = None,
    ) -> None:
        self.character = character
        self.store = store
        self.model = model
        self.model_config = model_config
        self.agent_id = agent_id
        self.plugins = list(plugins)
        self._owns_store = owns_store
        self._owns_model = owns_model
        self.rng = rng or random.Random()
        self.templates = resolve_templates(character.templates)
        self.character_state = CharacterState(character, rng=self.rng)
        self._names = name_pattern(character)
        # Carrier's own plugin (built-in actions and evaluator) first, then the others.
        self.actions: list[Action] = []
        self.providers: list[Provider] = []
        self.evaluators: list[Evaluator] = []
        for plugin in with_builtins(self.plugins):
            self.actions.extend(plugin.actions)
            self.providers.extend(plugin.providers)
            self.evaluators.extend(plugin.evaluators)
        self._action_index: dict[str, Action] = {}
        for action in reversed(self.actions):  # earlier (built-in) names win on clashes
            for alias in (action.name, *action.similes):
                self._action_index[normalize_action_name(alias)] = action
        # What the stages keep between turns.
        self._gates = RoomGates(self._room_lock if getattr(store, "locks_rooms", False) else None)
        self._muted: set[uuid.UUID] = set()  # rooms told to STOP
        self._facts = compose.FactCache()
        self._replays = Replays()
        self._evaluations = evaluate.Evaluations()
        self.room_message_counts: dict[uuid.UUID, int] = {}
        self.turn_logs: deque[TurnLog] = deque(maxlen=self.turn_log_history)
        self.last_turn_log: TurnLog | None = None
        self._closed = False
        # What happens in the rooms, for the API's WebSocket, webhooks and library callers.
        self.events = EventBus()
        # Where the bytes of a turn's files go before reply.completed names them (the API
        # sets its file store's `keep` here, so a client that reads the event can download
        # them at once); None: nowhere (the client gets them in TurnResult.files).
        self.file_sink: Callable[[list[OutgoingFile]], Awaitable[None]] | None = None
        # Every model call's record: priced, summed (`/usage`) and stored by the meter.
        self.usage = usage or UsageMeter(store, character=character.name, agent_id=agent_id)
        self._observed = _observe(self.usage, model, getattr(store, "embedder", None))
        # Budgets (usage.budget): asked before every model call; its meter counts them
        # (in any order among the model's observers: a cost priced later still counts).
        self.budget = budget or BudgetGate(None)  # none: every check allows, without I/O
        self._budget_meter = attach_meter(self.budget, model, character.name)
        # Prometheus metrics (carrier_cli.metrics) when enabled before this runtime was
        # built; None otherwise, and then a turn costs one attribute check for them.
        self.metrics = metrics_mod.active()
        if self.metrics is not None:
            from carrier_cli.metrics.runtime import attach

            attach(self.metrics, self)

    # ------------------------------------------------------------------ construction --
    @classmethod
    async def create(
        cls,
        character: Character,
        settings: Settings,
        *,
        store: MemoryStore | None = None,
        model: ChatModel | None = None,
        model_config: ModelConfig | None = None,
        provider: str | None = None,
        model_name: str | None = None,
        plugins: Sequence[Plugin] | None = None,
    ) -> AgentRuntime:
        """Open what is not given (store from settings, models via create_models), load
        plugins (entry points + the character's `plugins:`), ensure the agent row and ingest
        the character's knowledge (idempotent). `settings` is read here only."""
        owns_model = model is None
        if model is None:
            from carrier_cli.llm.factory import create_models

            model, model_config = create_models(settings, character, provider, model_name)
        elif model_config is None:
            model_config = default_model_config(character, model, model_name)
        assert model_config is not None
        loaded = discover_plugins(character.plugins, plugins or ())
        owns_store = store is None
        if store is None:
            from carrier_cli.memory.store import MemoryStore

            opened = MemoryStore.from_settings(settings)
            store = await opened if inspect.isawaitable(opened) else opened
        assert store is not None
        try:
            agent_id = await store.ensure_agent(character.name, character.id)
            runtime = cls(
                character,
                store=store,
                model=model,
                model_config=model_config,
                agent_id=agent_id,
                plugins=loaded,
                owns_store=owns_store,
                owns_model=owns_model,
                usage=UsageMeter(
                    store,
                    prices=settings.model_prices,
                    log_prompts=settings.log_prompts,
                    character=character.name,
                    agent_id=agent_id,
                    retention_days=settings.log_retention_days,
                ),
                budget=BudgetGate.for_character(
                    store, character.name, character.budget, settings.budget
                ),
            )
            redis_url = getattr(settings, "redis_url", None)
            if redis_url:  # facts learned here are seen by every process at once
                from carrier_cli.cluster.cache import open_cache

                runtime._facts = compose.FactCache(
                    await open_cache(
                        redis_url,
                        f"facts:{agent_id}",
                        capacity=compose.FACT_CACHE_LIMIT,
                        ttl=cls.fact_cache_ttl,
                    )
                )
            await runtime.ingest_knowledge()
        except BaseException:
            if owns_store:
                await _maybe_await(store.close())
            if owns_model:
                await model.aclose()
            raise
        return runtime

    async def ingest_knowledge(self) -> int:
        """Ingest the character's knowledge (files, directories and inline strings) through
        the memory layer, which chunks it into fragments and skips unchanged documents, so a
        restart adds nothing. Returns the number of documents added or replaced."""
        if not self.character.knowledge:
            return 0
        from carrier_cli.memory.knowledge import ingest_character_knowledge

        report = await ingest_character_knowledge(self.store, self.character)
        if report.skipped:
            log.warning("knowledge files without text were skipped: %s", ", ".join(report.skipped))
        return int(report.documents_added + report.documents_replaced)

    # ----------------------------------------------------------------------- public --
    async def handle_message(
        self, message: IncomingMessage, *, hooks: TurnHooks | None = None
    ) -> TurnResult:
        """Run one turn and return its result (replies are not streamed). `hooks` (see
        runtime/rooms.py): a client's bound on work at once, a start callback, and delivery
        of the result while the message's room is still held."""
        result: TurnResult | None = None
        turn = self._events(message, stream=False, hooks=hooks)
        try:
            async for event in turn:
                if event.kind == "done":
                    result = event.result
                    if hooks is not None and result is not None:
                        await hooks.finish(result)  # the turn is paused inside its room
        finally:
            await turn.aclose()
        assert result is not None
        return result

    def stream_message(self, message: IncomingMessage) -> AsyncIterator[TurnEvent]:
        """Like handle_message, yielding `delta` events with reply text as it is generated,
        then one `done` event. Close it (`aclosing`) if you stop early: the room is held
        until the generator finishes."""
        return self._events(message, stream=True)

    def set_model(self, model_name: str) -> None:
        """Switch the large model (`/model NAME` in chat); same provider and key."""
        with_model = getattr(self.model_config, "with_model", None)
        if callable(with_model):
            self.model_config = with_model(model_name)
        else:  # pragma: no cover - a foreign config object
            from dataclasses import replace

            self.model_config = replace(self.model_config, large=model_name)

    def forget_facts(self, entity_id: uuid.UUID | None = None) -> None:
        """Drop cached facts (of one person, or all) after storing or deleting facts."""
        self._facts.forget(entity_id)

    async def forget_facts_everywhere(self, entity_id: uuid.UUID | None = None) -> None:
        """`forget_facts`, returning once every process sharing the cache (redis_url) has
        been told: the API awaits it so the next turn on any server sees a stored fact."""
        await self._facts.forget_everywhere(entity_id)

    async def facts_about(self, entity_id: uuid.UUID) -> list[Memory]:
        """Facts the agent has stored about a person, oldest first."""
        facts = await self.store.list(
            agent_id=self.agent_id,
            kinds=[MemoryKind.FACT],
            entity_id=entity_id,
            limit=self.sender_fact_limit * 4,
        )
        return sorted(facts, key=lambda m: m.created_at or datetime.min.replace(tzinfo=UTC))

    async def warm(self) -> None:
        """Load what the first turn would otherwise wait for: the local embedding model
        (~0.5 s of loading in a worker thread, 0.95-1.4 s of waiting for the first turns
        of the Discord burst on a busy machine). Clients call it at start, while they
        connect, and say they are ready once it is done. A remote embedder has nothing to
        load; a failure is left to the first turn, which reports it."""
        warm = getattr(self.store.embedder, "warm", None)
        if warm is not None:
            await warm()

    async def wait_idle(self) -> None:
        """Wait for background evaluators (tests, shutdown)."""
        await self._evaluations.wait_idle()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.wait_idle()
        if self.metrics is not None:
            from carrier_cli.metrics.runtime import detach

            detach(self.metrics, self)
        for observers in self._observed:
            with contextlib.suppress(ValueError):
                observers.remove(self.usage.observe)
        await self.usage.aclose()
        await self._facts.aclose()
        if self._budget_meter is not None:  # off the model (it may outlive us), then flushed
            with contextlib.suppress(ValueError):
                getattr(self.model, "observers", []).remove(self._budget_meter)
            await self._budget_meter.aclose()
        if self._owns_model:
            await self.model.aclose()
        if self._owns_store:
            await _maybe_await(self.store.close())

    async def generate_post(
        self, *, topic: str | None = None, extra_instructions: str | None = None
    ) -> str:
        """A post (e.g. an Instagram caption) in the character's post style."""
        messages = prompts.post(self, topic, extra_instructions)
        return await generate.post(self, messages)

    # -------------------------------------------------------------------------- turn --
    def _room_lock(self, key: object) -> AbstractAsyncContextManager[None]:
        """The room held against other processes (RoomGates; PostgreSQL only). The room
        is named by the id intake gives it, the same in every process."""
        source, room_key = cast("tuple[str, str]", key)
        return self.store.room_lock(stable_id(source, "room", room_key, self.agent_id))

    def _events(
        self, message: IncomingMessage, *, stream: bool, hooks: TurnHooks | None = None
    ) -> AsyncGenerator[TurnEvent, None]:
        """One turn's events; counted and timed by the metrics when they are on."""
        events = self._turn_events(message, stream=stream, hooks=hooks)
        if self.metrics is None:
            return events
        from carrier_cli.metrics.runtime import observe_turn

        return observe_turn(self.metrics, events, self.character.name, message.source)

    async def _turn_events(
        self, message: IncomingMessage, *, stream: bool, hooks: TurnHooks | None = None
    ) -> AsyncGenerator[TurnEvent, None]:
        """Room ordering (runtime/rooms.py), intake, replays and the turn log around
        `_respond`."""
        started = perf_counter()
        timings: dict[str, float] = {}

        async def store_message() -> Intake:
            # The message's embedding (a remote embedder records it).
            with calling(
                purpose="embedding",
                character=self.character.name,
                agent_id=self.agent_id,
                client=message.source,
            ):
                return await intake.intake(
                    self.store, self.agent_id, message, self.room_message_counts
                )

        room = (message.source, message.room_key)
        # The local embedder runs here, on the CPU: storing then calls no model and holds
        # none of the client's slots (runtime/rooms.py); a remote one does.
        remote = not getattr(self.store.embedder, "in_process", False)
        async with self._gates.turn(
            room, store_message, hooks, intake_is_model_call=remote
        ) as place:
            arrived = place.stored
            timings["intake"] = perf_counter() - started
            if not arrived.seen_before and self.events.active:
                self._publish_message(arrived.memory, arrived.room, from_agent=False)
            if arrived.seen_before:
                replay = await self._replays.lookup(
                    self.store, self.agent_id, message, arrived.memory
                )
                if replay is not None:
                    timings["total"] = perf_counter() - started
                    replay.timings = timings
                    yield TurnEvent("done", result=replay)
                    return
            tlog = TurnLog(
                message_id=arrived.memory.id,
                room_id=arrived.room.id,
                started_at=datetime.now(UTC),
                timings=dict(timings),
            )
            ctx = TurnContext(
                runtime=self,
                message=message,
                memory=arrived.memory,
                room=arrived.room,
                entity=arrived.entity,
            )
            finished = False
            try:
                turn = TurnState(
                    ctx,
                    tlog,
                    stream=stream,
                    started=started,
                    reply_id=reply_id(message, self.agent_id),
                    release_slot=hooks.release if hooks is not None and not remote else None,
                )
                respond = self._respond(turn)
                async with generate.closing(respond):
                    async for event in respond:
                        finished = event.kind == "done"
                        yield event
            except (asyncio.CancelledError, GeneratorExit):
                # A consumer that closes the stream right after `done` interrupted nothing.
                tlog.interrupted = not finished
                raise
            except Exception as exc:
                if self.events.active:
                    self._publish(
                        "agent.error",
                        {
                            "room": room_ref(arrived.room),
                            "message_id": str(arrived.memory.id),
                            "error": {
                                "type": type(exc).__name__,
                                "message": one_line(str(exc), 500),
                            },
                        },
                        room_id=arrived.room.id,
                    )
                raise
            finally:
                tlog.newer_messages = place.newer_messages
                tlog.timings.update(timings)
                self.last_turn_log = tlog
                self.turn_logs.append(tlog)
                if turn_log.isEnabledFor(logging.DEBUG):
                    turn_log.debug("%s", tlog.render())

    async def _respond(self, turn: TurnState) -> AsyncIterator[TurnEvent]:
        """The turn after intake, stage by stage (`runtime/turn/`)."""
        with _stage(turn, "decide"):
            await decide.decide(self, turn, self._names, self._muted)
        if turn.decision in ("IGNORE", "STOP"):
            result = TurnResult(decision=turn.decision, message_id=turn.ctx.memory.id)
            yield self._finish(turn, result)
            return
        with _stage(turn, "compose"):
            await compose.compose(self, turn, self._facts)
        room = turn.ctx.room
        self._typing(room, True)
        try:
            with _stage(turn, "generate"):
                deltas = generate.reply(self, turn)
                async with generate.closing(deltas):
                    async for delta in deltas:
                        if self.events.active:
                            self._publish(
                                "reply.token",
                                {
                                    "room": room_ref(room),
                                    "in_reply_to": str(turn.ctx.memory.id),
                                    "reply_id": str(turn.reply_id),
                                    "text": delta,
                                },
                                room_id=room.id,
                            )
                        yield TurnEvent("delta", text=delta)
        finally:
            self._typing(room, False)
        result = TurnResult(
            decision=turn.decision,
            message_id=turn.ctx.memory.id,
            actions=list(turn.parsed.actions),
            thought=turn.parsed.thought,
        )
        if turn.parsed.text:
            if turn.release_slot is not None and act.no_model_call_left(self, turn):
                # The slot bounds model calls: the reply's local embedding and write are
                # not one. Held through them, it stretched every hold in the Discord
                # burst by ~3.7 ms of its ~64 (the write waits for the group commit).
                turn.release_slot()
            with _stage(turn, "store_reply"), using(call_context(self, turn.ctx, "embedding")):
                await act.store_reply(self, turn, result)  # a remote embedder records it
            if turn.ctx.reply is not None and self.events.active:
                self._publish_message(turn.ctx.reply, room, from_agent=True)
            with _stage(turn, "actions"):
                await act.run_actions(self, turn, result)
            if result.files and self.file_sink is not None:
                await self.file_sink(result.files)
        yield self._finish(turn, result)

    def _finish(self, turn: TurnState, result: TurnResult) -> TurnEvent:
        """Close the turn's timings into its result, remember it for replays and start
        the evaluators; returns the `done` event."""
        timings = turn.timings
        total = perf_counter() - turn.started
        timings["model"] = turn.model_seconds
        timings["total"] = total
        timings["overhead"] = total - turn.model_seconds
        result.timings = dict(timings)
        self._replays.remember(result)
        if result.text is not None and self.events.active:
            self._publish(
                "reply.completed",
                {
                    "room": room_ref(turn.ctx.room),
                    "in_reply_to": str(result.message_id),
                    "reply": {
                        "id": str(result.reply_id),
                        "text": result.text,
                        "actions": result.actions,
                        "thought": result.thought,
                        "extra_messages": result.extra_messages,
                        "files": [describe_file(f) for f in result.files],
                        "embeds": [embed_json(e) for e in result.embeds],
                    },
                },
                room_id=turn.ctx.room.id,
            )
        if not self._closed:
            self._evaluations.schedule(self, turn.ctx)
        return TurnEvent("done", result=result)

    async def continue_turn(self, ctx: TurnContext) -> str | None:
        """One follow-up message after the reply (the CONTINUE action); at most one per turn."""
        if ctx.reply is None or ctx.continued:
            return None
        ctx.continued = True
        now = datetime.now(UTC)
        messages = prompts.continuation(self, ctx, ctx.reply, now)
        tlog = self.last_turn_log or TurnLog(ctx.memory.id, ctx.room.id, now)
        gen = generate.Generation()
        verdict = await self.budget.check("continue")
        if verdict.refused:
            return None
        call = call_context(self, ctx, "continue")
        async for _ in generate.generate(
            self.model,
            messages,
            self.model_config.params(small=verdict.small),
            tlog,
            False,
            gen,
            purpose="continue",
            call=call,
        ):
            pass
        text = gen.parsed.text
        if not text or text.strip() == ctx.reply.text.strip():
            return None
        return text

    # ------------------------------------------------------------------------ events --
    def _publish(self, kind: str, data: dict[str, Any], *, room_id: uuid.UUID | None) -> None:
        self.events.publish(
            AgentEvent(kind, self.agent_id, self.character.name, data, room_id=room_id)
        )

    def _publish_message(self, memory: Memory, room: Room, *, from_agent: bool) -> None:
        """`message.created`, whose id is the memory's (a WebSocket's `since` cursor)."""
        data = message_data(memory, room, self.character.name, from_agent=from_agent)
        self.events.publish(
            AgentEvent(
                "message.created",
                self.agent_id,
                self.character.name,
                data,
                room_id=room.id,
                id=str(memory.id),
            )
        )

    def publish_stored(self, memory: Memory, room: Room) -> None:
        """For the turn's stages: an agent message stored outside the reply (an action's
        output) is announced like the reply."""
        if self.events.active:
            self._publish_message(memory, room, from_agent=True)

    def _typing(self, room: Room, state: bool) -> None:
        if self.events.active:
            self._publish(
                "typing",
                {"room": room_ref(room), "state": "start" if state else "stop"},
                room_id=room.id,
            )

    def find_action(self, name: str) -> Action | None:
        return self._action_index.get(normalize_action_name(name))

    async def complete_small(
        self, prompt: str, *, purpose: str, tlog: TurnLog | None = None, max_tokens: int = 512
    ) -> str:
        """A small-model call with the character's system prompt (used by evaluators)."""
        messages = prompts.small(self, prompt)
        params = self.model_config.params(small=True, temperature=0.2, max_tokens=max_tokens)
        verdict = await self.budget.check(purpose)
        if verdict.refused:  # evaluators skip on it (turn.evaluate); plugins see why
            raise BudgetRefused(verdict)
        began = perf_counter()
        # Room, client and turn come from the enclosing context (the evaluators set it).
        with calling(purpose=purpose, character=self.character.name, agent_id=self.agent_id):
            raw = await self.model.complete(messages, params)
        if tlog is not None:
            tlog.calls.append(
                PromptRecord(
                    purpose, params.model, prompt, output=raw, seconds=perf_counter() - began
                )
            )
        log.debug("%s (%s): %s", purpose, params.model, raw[:500])
        return raw


def attach_meter(gate: BudgetGate, model: ChatModel, character: str) -> BudgetMeter | None:
    """With a budget, a meter on the model's observers counts every call it makes."""
    observers = getattr(model, "observers", None)
    if not gate.active or gate.store is None or observers is None:
        return None
    from carrier_cli.usage.budget_meter import BudgetMeter

    meter = BudgetMeter(gate.store, gate, character)
    observers.append(meter)
    return meter


def default_model_config(
    character: Character, model: ChatModel, model_name: str | None = None
) -> ModelConfig:
    """A config for a model object handed in directly (tests, benches, embedding apps)."""
    from carrier_cli.llm.factory import ModelConfig

    cm = character.model
    large = model_name or cm.name or "default"
    return ModelConfig(
        provider=getattr(model, "name", "custom"),
        large=large,
        small=cm.small or large,
        temperature=cm.temperature,
        max_tokens=cm.max_tokens,
    )


@contextmanager
def _stage(turn: TurnState, name: str) -> Iterator[None]:
    """Time a stage into the turn's timings; a stage that fails or is cancelled records
    nothing (the turn log shows how far the turn got)."""
    mark = perf_counter()
    yield
    turn.timings[name] = perf_counter() - mark


def _observe(meter: UsageMeter, *models: object) -> list[list[CallObserver]]:
    """Add the meter to each model's (and remote embedder's) observers; returns the lists
    it was added to, so `aclose` takes it out again (a model may outlive the runtime)."""
    added = observer_lists(*models)
    for observers in added:
        observers.append(meter.observe)
    return added


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value
