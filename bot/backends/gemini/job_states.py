"""What an interaction says about its job: its status as soracast's `JobStatus`, why it ended without a video
(a failure Google reported, a stop, or a safety block answered in words), and the generation id a create put in
its `user_metadata`.
"""

from __future__ import annotations

from typing import Any

from bot.backends.base import GENERATION_KEY, JobState, JobStatus
from bot.backends.gemini.errors import classify_failure, classify_refusal_text

STATUS = {
    "queued": JobStatus.QUEUED,
    "in_progress": JobStatus.IN_PROGRESS,
    "requires_continuation": JobStatus.IN_PROGRESS,
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.FAILED,
    "incomplete": JobStatus.FAILED,
    "budget_exceeded": JobStatus.FAILED,
    # A video job has nobody to answer an action or wake an idle interaction: waiting would last until the
    # deadline, so these end the job with words a user understands (see `STOPPED`).
    "requires_action": JobStatus.FAILED,
    "idle": JobStatus.FAILED,
}
#: Why a job ended without a video, by the interaction status that ended it.
STOPPED = {
    "cancelled": "The job was cancelled.",
    "incomplete": "Gemini stopped before the video was finished.",
    "budget_exceeded": "Gemini stopped: the request's budget was exceeded.",
    "requires_action": "Gemini paused this video to ask for an action soracast cannot take, so it was stopped.",
    "idle": "Gemini left this video idle instead of making it, so it was stopped.",
}


def job_state(interaction: Any) -> JobState:
    """The job an interaction is, as the core tracks it."""
    status_text = str(getattr(interaction, "status", None) or "in_progress")
    status = STATUS.get(status_text, JobStatus.IN_PROGRESS)
    code, message = None, None
    if status is JobStatus.COMPLETED and getattr(interaction, "output_video", None) is None:
        # A safety block can end as a completed interaction that answered in words instead of a video.
        status = JobStatus.FAILED
        code, message = classify_refusal_text(_output_text(interaction))
    elif status is JobStatus.FAILED:
        errors = getattr(interaction, "errors", None) or []
        first = errors[0] if errors else None
        reported = str(getattr(first, "message", "") or "") if first is not None else ""
        code = status_text if status_text in STOPPED and status_text != "budget_exceeded" else "failed"
        if reported:
            code, message = classify_failure(reported, code)
        message = reported or STOPPED.get(status_text, "Gemini could not make this video.")
    return JobState(
        id=str(interaction.id),
        status=status,
        progress=100 if status is JobStatus.COMPLETED else None,
        error_code=code,
        error_message=message,
        request_key=_request_key(interaction),
    )


def _request_key(interaction: Any) -> str | None:
    """The generation id a create put in `webhook_config.user_metadata`, when Google sends it back."""
    config = getattr(interaction, "webhook_config", None)
    metadata = getattr(config, "user_metadata", None) if config is not None else None
    value = metadata.get(GENERATION_KEY) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None


def _output_text(interaction: Any) -> str:
    given = getattr(interaction, "output_text", None)
    if given:
        return str(given)
    texts: list[str] = []
    for step in getattr(interaction, "steps", None) or []:
        if getattr(step, "type", None) != "model_output":
            continue
        for content in getattr(step, "content", None) or []:
            text = getattr(content, "text", None)
            if text:
                texts.append(str(text))
    return " ".join(texts)
