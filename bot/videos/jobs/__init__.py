"""The run-time side of generations: the line, leases, tracking and delivery, in each process.

- **The line.** Requests wait in soracast's line (`waiting`) and one dispatcher per backend sends them in fair
  order (`bot.videos.line`) while that backend has capacity (`bot.videos.limiter`), in rounds: one light read
  of the line, every create allowed now, then the places that changed in one write. A 429 on a create puts the
  job back in line and pauses the backend; it never fails the job.
- **Sending exactly once.** A job is claimed (`waiting` → `submitting`, atomically, with a lease) and the claim
  is stored with the time before its create goes out. A create that gets no answer (a 5xx, a timeout, a
  dropped connection) is not repeated blindly: the tracker first asks the backend whether the job exists
  (`find_job`, where the backend can list jobs) and adopts it. A backend that cannot list jobs but announces
  them by a webhook naming the generation (`announces_jobs`: Gemini, fal with `SORACAST_PUBLIC_URL`) is not sent
  again while that webhook can still come (`SORACAST_WEBHOOK_WAIT` after the create, read from what is stored,
  so a restart keeps waiting): the webhook gives the generation its job (`Storage.adopt_job`). Only where
  nothing was made, or nobody can tell, is it sent again.
- **Leases.** Every unfinished or undelivered generation is worked on by the one live process that holds its
  lease; leases are renewed while the process lives and taken over when they expire, or at once when their
  holder is dead: every process beats (`SORACAST_HEARTBEAT_SECONDS`) and one that stopped beating, or ended, is
  dead. A webhook for a dead holder's job is taken over by the process that received it. A process only leases
  generations of the platforms it serves.
- **One create rate per account.** Where processes on several machines share the database, create turns are
  taken from one limiter per backend account kept there (and a 429 holds them for every process), so three
  processes do not send three times what a provider allows.
- **Tracking.** One tracker per leased generation polls (in batches where the backend can list jobs), downloads
  the result and delivers it. It never stops on a retryable error (429, 5xx, timeout): it waits and goes on.
- **Delivery** happens under the lease, and `delivered_at` is set only once the adapter confirms.

The parts, each a mixin over one declared state (`state.RunnerState`), put together in `runner.JobRunner`:

- `state`: what the parts share (settings, wiring, the state they keep, limits and intervals) and the calls they
  all make: a backend request through its limiter, recording a job's state, waiting until woken.
- `dispatching`: the line; one dispatcher per backend sends in rounds, and the places left are written and told.
- `submitting`: claim, build the request, send; settle a create whose answer was lost; shared create turns.
- `tracking`: one tracker per held generation, polling (batched sweeps, webhook wake-ups) until it is finished.
- `delivering`: download and thumbnail, the post under the lease, progress notes, a likeness refusal explained.
- `leasing`: leases and heartbeats, dead processes' jobs taken over, wake-ups between processes.
- `runner`: `JobRunner`, with the notifiers of the platforms this process serves, its start and its stop.
"""

from bot.videos.jobs.runner import JobRunner
from bot.videos.jobs.state import (
    ANNOUNCE_WAIT,
    DEFAULT_JOB_SECONDS,
    FIND_JOB_GRACE,
    LINE_MESSAGE,
    MAX_BACKOFF,
    MAX_SOURCE_CHAIN,
    MAX_SUBMIT_ATTEMPTS,
    OFFLINE_FIRST_WAIT,
    TOLD_BEATS,
    TRACK_MESSAGE,
    Outcome,
    exc_wait,
    process_id,
)

__all__ = [
    "ANNOUNCE_WAIT",
    "DEFAULT_JOB_SECONDS",
    "FIND_JOB_GRACE",
    "LINE_MESSAGE",
    "MAX_BACKOFF",
    "MAX_SOURCE_CHAIN",
    "MAX_SUBMIT_ATTEMPTS",
    "OFFLINE_FIRST_WAIT",
    "TOLD_BEATS",
    "TRACK_MESSAGE",
    "JobRunner",
    "Outcome",
    "exc_wait",
    "process_id",
]
