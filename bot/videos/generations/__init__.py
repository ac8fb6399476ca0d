"""GenerationService: what a person can ask of a video — make, remix, extend, cancel, delete — and its state.

The order of a request is fixed: check it (prompt, model, characters, the person's place in line, the
workspace's budget), store it, then return to the adapter, which tells the user. It is sent at once when the
line is empty and the backend has room (so a refusal still reaches the person directly and leaves nothing
behind); otherwise it waits in the fair line. Everything after that — the line, leases, tracking, delivering
exactly once — is `bot.videos.jobs.JobRunner`'s.

The parts, each a mixin over one declared state (`state.ServiceState`), put together in
`service.GenerationService`:

- `state`: the service's wiring and the reads every part makes (a workspace's video, a finished one).
- `requesting`: make, remix, extend — checked, stored, then sent or left in line; what a finished video offers.
- `changing`: the messages that show a video, the line as a workspace sees it, cancel, delete, a character cut
  from a video, waiting until one is posted.
- `provider_events`: a backend's webhook, taken to its job's holder (a lost create's job adopted).
- `service`: `GenerationService`, with the adapters' notifiers, its start and its stop.
"""

from bot.videos.generations.changing import LineEntry
from bot.videos.generations.service import GenerationService

__all__ = ["GenerationService", "LineEntry"]
