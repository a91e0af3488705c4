"""The stages of a turn, one module each, run in order by `AgentRuntime._respond`.

- `intake`: store the incoming message (room, entity, participant, the memory itself);
- `replay`: the earlier result of a platform message seen before;
- `decide`: the rules, else the small model (and the rooms told to STOP);
- `compose`: the concurrent reads (recent messages, knowledge, sender facts, providers,
  action validation) the reply prompt is built from (the prompt itself is in
  `runtime/prompts.py`, with every other prompt);
- `generate`: the model call, asked again only for broken markup;
- `act`: store the reply and run the chosen actions;
- `evaluate`: the evaluators, in background tasks after the turn.

Each stage is a function (or a small class when it keeps something between turns, like a
cache) taking `TurnDeps`, the part of the runtime the stages read, and `TurnState`, the
turn in progress (`state.py`). Nothing here imports `runtime.agent`: the runtime depends on
its stages, never the other way round.
"""
