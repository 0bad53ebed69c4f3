"""`concord worker`: check its topics (creating them first only when CONCORD_CREATE_TOPICS says
so), then run the stream processors and HTTP API."""

from __future__ import annotations

from schemas.identifiers import configured_placeholders


def main(loglevel: str = "warning") -> int:
    """Run one faust worker in the foreground until interrupted."""
    from deploy.topics import check_topics, create_topics
    from schemas.topics import workers_create_topics
    from services.runtime import partner_directory, service_directory, settings

    current = settings()
    # Refuse to start on a broken directory or setting rather than fail on the first message.
    partner_directory(current.partners_file)
    service_directory(current.services_file)
    configured_placeholders()
    current.data_dir.mkdir(parents=True, exist_ok=True)
    # Managed clusters rarely let a worker create topics: by default it only checks them, and
    # refuses to start on a missing one or one with another partition count.
    if workers_create_topics():
        create_topics()
    check_topics()
    import faust

    from services.stream import agents  # noqa: F401 -- importing registers the agents
    from services.stream.app import app
    from services.web import observe, views  # noqa: F401 -- and the pages

    # override_logging off: faust would replace the JSON handler configure_logging installed
    # with its own plain-text one (mode's loghandlers/logging_config).
    worker = faust.Worker(app, loglevel=loglevel.upper(), quiet=True, override_logging=False)
    # faust's terminal spinner sets the root logger to DEBUG so that it sees every record: then
    # each debug call in faust and aiokafka (several per message) builds a record for nothing.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
