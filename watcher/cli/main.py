"""The ``watcher`` command line.

watcher run        the daemon
watcher once       one round of every check, a table or --json; exit 1 if any fails
watcher validate   check watcher.yml and its rule packs; exit 2 on problems
watcher incidents  list | show ID | ack ID | resolve ID  [--json]
watcher explain    which rules match a target's latest results, and why
watcher test-integration NAME   send a clearly marked test ticket or page
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from watcher import __version__
from watcher.config.load import load_config, load_for_reading
from watcher.config.models import Config, ConfigError
from watcher.core.secret import redact
from watcher.delivery.render import counted
from watcher.store.sqlite_file import StateFileError, StateLocked

EXIT_OK, EXIT_FAILING, EXIT_CONFIG = 0, 1, 2
# What a helpdesk's refusal most likely means, said before its own words
REFUSALS = {
    400: "refused as invalid (a required field is missing, or a configured name or id does not exist)",
    401: "wrong credentials (check the user, password, token or key)",
    403: "permission denied (the API user lacks a right this needs; docs/tickets-and-pages.md lists each helpdesk's)",
    404: "not found (check url: and the project, board, queue or ids the config names)",
    409: "conflict (the ticket's state does not allow this)",
    422: "refused as invalid (a required field is missing, or a configured name or id does not exist)",
    429: "rate limited (try again later)",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(redact(str(exc)), file=sys.stderr)
        return EXIT_CONFIG
    except (StateFileError, StateLocked) as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watcher", description="Probes a site, tickets and pages its incidents."
    )
    parser.add_argument("--version", action="version", version=f"watcher {__version__}")
    config_help = "config file (default: $WATCHER_CONFIG or ./watcher.yml)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", default=os.environ.get("WATCHER_CONFIG", "watcher.yml"), help=config_help
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="run the watcher until stopped")
    p.add_argument("--listen", metavar="HOST:PORT", help="overrides listen: of the config")
    p.add_argument("--node", help="this cluster member's name (default: the hostname)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("once", parents=[common], help="run every check once and print the results")
    p.add_argument("--target", action="append", help="only this target (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_once)

    p = sub.add_parser("validate", parents=[common], help="check the config and rule packs")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "incidents", parents=[common], help="list, show, acknowledge or resolve incidents"
    )
    p.add_argument("action", nargs="?", default="list", choices=["list", "show", "ack", "resolve"])
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--all", action="store_true", help="include resolved incidents")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--by", default=os.environ.get("USER", "cli"), help="who acknowledges or resolves"
    )
    p.add_argument("--note", default="", help="a note for resolve")
    p.set_defaults(func=cmd_incidents)

    p = sub.add_parser(
        "explain", parents=[common], help="show which rules match a target's latest results"
    )
    p.add_argument("target")
    p.add_argument(
        "--run",
        action="store_true",
        help="run the target's checks now instead of reading the latest",
    )
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "test-integration", parents=[common], help="send a marked test ticket or page"
    )
    p.add_argument("name", help="integration name, e.g. email or tickets/email")
    p.set_defaults(func=cmd_test_integration)
    _extend(sub, common)
    return parser


def _extend(sub: Any, common: argparse.ArgumentParser) -> None:
    """Commands that live in their own modules add themselves here."""
    for module_name in (
        "watcher.audit.cli",
        "watcher.cli.maintenance",
        "watcher.cli.state",
        "watcher.cluster.cli",
    ):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError:
            continue
        module.register(sub, common)


# ------------------------------------------------------------------------ commands


def cmd_run(args: argparse.Namespace) -> int:
    from watcher.app.daemon import App, configure_logging

    config = load_config(args.config)
    configure_logging(config.model.log_level)
    return App(args.config, config=config, node=args.node, listen=args.listen).run()


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    m = config.model
    checks = sum(len(t.probes) for t in m.targets)
    # redact: a value given as a secret anywhere (${VAR}) is masked wherever it appears
    print(
        redact(
            f"{args.config}: ok: site {m.site}, {counted(len(m.targets), 'target')}, "
            f"{counted(checks, 'check')}, {counted(len(config.rules.rules), 'rule')} from "
            f"{', '.join(str(p) for p in config.rule_files)}"
        )
    )
    for line in config.rules.overrides:
        print(redact(f"  {line}"))
    return EXIT_OK


def _round(config: Config, targets: list[str] | None) -> list[Any]:
    from watcher.app.daemon import build_jobs
    from watcher.delivery.httpclient import HttpClients
    from watcher.schedule.scheduler import Scheduler
    from watcher.transports import Runners
    from watcher.web.metrics import Metrics

    known = {t.name for t in config.model.targets}
    for name in targets or []:
        if name not in known:
            raise ConfigError(
                [_issue(f"no target named {name!r}; targets: {', '.join(sorted(known))}")]
            )
    runners = Runners(config.model, base_dir=config.base_dir)
    jobs = [
        j
        for j in build_jobs(config, HttpClients(), runners)
        if not targets or j.target.name in targets
    ]
    scheduler = Scheduler(
        jobs, workers=config.model.workers, on_results=lambda r: None, metrics=Metrics()
    )
    try:
        return scheduler.run_round()
    finally:
        scheduler.stop(wait_for_probes=False)
        runners.close()


def _issue(message: str) -> Any:
    from watcher.core.yamlsource import ConfigIssue

    return ConfigIssue(None, "", message)


def cmd_once(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    results = _round(config, args.target)
    results.sort(key=lambda r: r.key)
    if not results and not args.json:
        print("no checks to run")
        return EXIT_OK
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        rows = [
            (
                r.target,
                (r.probe + " " + r.item).strip(),
                r.status.upper(),
                f"{r.duration_s * 1000:.0f}ms",
                r.message,
            )
            for r in results
        ]
        _table(["TARGET", "CHECK", "STATUS", "TIME", "MESSAGE"], rows)
    return EXIT_OK if all(r.status == "ok" for r in results) else EXIT_FAILING


def cmd_incidents(args: argparse.Namespace) -> int:
    from watcher.engine.incident import public_view
    from watcher.store import Store

    # ack and resolve may comment on the ticket from here: they need the helpdesk's secrets
    load = load_for_reading if args.action in ("list", "show") else load_config
    config = load(args.config)
    if not config.state_is_database and not config.state_path.exists():
        print(f"no state yet at {config.state_path}: watcher has not run", file=sys.stderr)
        return EXIT_OK if args.action == "list" else EXIT_FAILING
    store = Store(config.state_location)
    try:
        if args.action == "list":
            items = (
                store.incidents(limit=1000)
                if args.all
                else store.incidents(states=["pending", "open", "acknowledged"])
            )
            failed = {r.incident_id for r in store.outbox(states=["failed"])}
            pending = {r.incident_id for r in store.outbox(states=["pending"])}
            if args.json:
                out = []
                for i in items:
                    view = public_view(i)
                    view["tickets"] = store.tickets(i.id or 0)
                    view["delivery"] = (
                        "failed" if i.id in failed else "pending" if i.id in pending else "done"
                    )
                    out.append(view)
                print(json.dumps(out, indent=2))
                return EXIT_OK
            if not items:
                print("no incidents" if args.all else "no open incidents")
                return EXIT_OK
            calendar = config.calendar
            from watcher.delivery.render import local_time
            from watcher.engine.suppression import describe

            rows = []
            for i in items:
                delivery = "FAILED" if i.id in failed else "queued" if i.id in pending else ""
                tickets = ", ".join(t["external_id"] for t in store.tickets(i.id or 0))
                rows.append(
                    (
                        str(i.id),
                        i.priority or "-",
                        i.state,
                        i.target,
                        (i.summary or i.message)[:70],
                        tickets or "-",
                        local_time(i.response_due, calendar),
                        local_time(i.resolve_due, calendar),
                        delivery,
                        describe(i),
                    )
                )
            _table(
                [
                    "ID",
                    "PRI",
                    "STATE",
                    "TARGET",
                    "SUMMARY",
                    "TICKET",
                    "RESPOND BY",
                    "RESOLVE BY",
                    "DELIVERY",
                    "NOTE",
                ],
                rows,
            )
            return EXIT_OK
        if args.id is None:
            print(f"watcher incidents {args.action} needs an incident ID", file=sys.stderr)
            return EXIT_CONFIG
        incident = store.incident(args.id)
        if incident is None:
            print(f"no incident {args.id}", file=sys.stderr)
            return EXIT_FAILING
        if args.action == "show":
            view = public_view(incident)
            view["timeline"] = [
                {"at": e.at.isoformat(), "kind": e.kind, "message": e.message}
                for e in store.events(args.id)
            ]
            view["tickets"] = store.tickets(args.id)
            view["deliveries"] = [
                {
                    "id": r.id,
                    "integration": r.integration,
                    "action": r.action,
                    "state": r.state,
                    "attempts": r.attempts,
                    "error": r.last_error,
                }
                for r in store.outbox(incident_id=args.id)
            ]
            if args.json:
                print(json.dumps(view, indent=2))
            else:
                for key, value in view.items():
                    if isinstance(value, list) and value and isinstance(value[0], dict):
                        print(f"{key}:")
                        for item in value:
                            print("  " + "  ".join(f"{v}" for v in item.values()))
                    else:
                        print(f"{key + ':':<17} {value}")
            return EXIT_OK
        return _request(args, config, store, incident.id or 0)
    finally:
        store.close()


def _request(args: argparse.Namespace, config: Config, store: Any, incident_id: int) -> int:
    """Acks and resolves go through whoever owns the incidents: the running daemon if
    there is one (it applies queued requests within a second), else this process."""
    from watcher.app.daemon import apply_requests, build_integrations

    now = datetime.now(UTC)
    request_id = store.request(args.action, incident_id, args.by, args.note, now)
    if store.run_locked():
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            outcome = store.request_outcome(request_id)
            if outcome is not None:
                print(f"incident {incident_id}: {outcome}")
                return EXIT_OK
            time.sleep(0.2)
        print(
            "the running watcher did not take the request within 15 s; it stays queued",
            file=sys.stderr,
        )
        return EXIT_FAILING
    from watcher.app.pipeline import Engine
    from watcher.delivery.httpclient import HttpClients
    from watcher.delivery.outbox import Dispatcher
    from watcher.web.metrics import Metrics

    engine = Engine(config, store)
    apply_requests(engine, store)
    dispatcher = Dispatcher(store, build_integrations(config, HttpClients()), Metrics())
    dispatcher.drain(timeout=30)
    print(f"incident {incident_id}: {store.request_outcome(request_id)}")
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from watcher.engine.incident import fingerprint_of
    from watcher.store import Store

    config = (load_config if args.run else load_for_reading)(args.config)
    target = config.targets.get(args.target)
    has_state = config.state_is_database or config.state_path.exists()
    if target is None and has_state:
        # a target only Alertmanager names (its alerts' instance label) has results, no config
        from watcher.store import Store as _Store

        known = _Store(config.state_location).latest(args.target)
        if known:
            from watcher.config.models import Target

            target = Target.model_construct(name=args.target, labels={}, depends_on=[], probes=[])
    if target is None:
        raise ConfigError(
            [
                _issue(
                    f"no target named {args.target!r}; targets: {', '.join(sorted(config.targets))}"
                )
            ]
        )
    store = Store(config.state_location) if has_state else None
    results = [] if args.run or store is None else store.latest(args.target)
    source = "latest recorded results"
    if not results:
        if config.unset:
            config = load_config(args.config)  # checks run now need every secret
        results = _round(config, [args.target])
        source = "a check run just now"
    print(f"{args.target}: {counted(len(results), 'result')} ({source})")
    for result in sorted(results, key=lambda r: r.key):
        check = (result.probe + " " + result.item).strip()
        print(f"\n{check}: {result.status.upper()} {result.message}")
        if result.metrics:
            print(
                "  metrics: " + ", ".join(f"{k}={v:g}" for k, v in sorted(result.metrics.items()))
            )
        evaluations = config.rules.evaluate(result, target.labels, target.host)
        if not evaluations:
            print("  no rule looks at this check")
        for ev in evaluations:
            rule = ev.rule
            verdict = {
                True: "HOLDS",
                False: "does not hold",
                None: "cannot tell (metric missing or probe error)",
            }[ev.value]
            hold = []
            if rule.for_:
                hold.append(f"for {rule.for_}")
            if rule.after:
                hold.append(f"after {rule.after} results")
            values = (
                ", ".join(f"{n}={_show(result, n)}" for n in sorted(rule.when.names))
                or "status " + result.status
            )
            print(
                f"  rule {rule.name} [{rule.priority}] when {rule.when.text!r}: {verdict} ({values})"
                + (f"; must hold {' and '.join(hold)}" if hold else "")
            )
            fingerprint = fingerprint_of(config.site, result.target, ev.group)
            if store is not None:
                row = store.latest_incident(fingerprint)
                if row is not None:
                    print(
                        f"    incident {row['id']} ({row['state']}, {row['priority']}) group {ev.group!r}"
                    )
    return EXIT_OK


def _show(result: Any, name: str) -> str:
    from rules.condition import _lookup

    value = _lookup(result, name)
    return "missing" if value is None else f"{value:g}" if isinstance(value, float) else repr(value)


def cmd_test_integration(args: argparse.Namespace) -> int:
    from integrations.base import DeliveryError, TicketContent
    from watcher.app.daemon import build_integrations
    from watcher.delivery.httpclient import HttpClients

    config = load_config(args.config)
    built = build_integrations(config, HttpClients())
    matches = {k: v for k, v in built.items() if args.name in (k, k.split("/", 1)[1])}
    receiver = args.name in ("alertmanager", "alertmanager-webhook") and config.model.alertmanager
    if receiver:  # the other direction: Alertmanager posting to this watcher
        from watcher.web.alertmanager_api import test_receiver

        ok, lines = test_receiver(config)
        print("\n".join(f"alertmanager webhook: {line}" for line in lines))
        if not matches:
            return EXIT_OK if ok else EXIT_FAILING
    if not matches:
        print(
            f"no integration named {args.name!r}; configured: {', '.join(built) or 'none'}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    status = EXIT_OK if not receiver or ok else EXIT_FAILING
    for key, integration in matches.items():
        content = TicketContent(
            incident_id=0,
            fingerprint=f"wtest{int(time.time())}",
            site=config.site,
            target="watcher",
            host=None,
            priority="P4",
            priority_name="Low",
            summary="integration test, please ignore",
            subject=f"[TEST][{config.site}] watcher: integration test, please ignore",
            body=f"This is a test sent by `watcher test-integration {args.name}` at {now}.\nNo action is needed.",
            state="open",
            action="test",
        )
        try:
            if integration.role == "tickets":
                ref = integration.open(content)
                print(
                    f"{key}: test ticket created: {ref.id}" + (f" ({ref.url})" if ref.url else "")
                )
                try:
                    integration.resolve(
                        ref, TicketContent(**{**content.to_dict(), "text": "Test over; resolving."})
                    )
                    print(f"{key}: test ticket resolved")
                except DeliveryError as exc:
                    print(f"{key}: could not resolve the test ticket: {_refusal(exc)}")
            else:
                integration.page(content)
                print(f"{key}: test page sent")
                integration.page_resolve(content)
        except DeliveryError as exc:
            kind = "temporary" if exc.retry else "permanent"
            print(f"{key}: FAILED ({kind}): {_refusal(exc)}", file=sys.stderr)
            status = EXIT_FAILING
        finally:
            integration.close()
    return status


def _refusal(exc: Exception) -> str:
    """A delivery error in one line, what the refusal most likely means first."""
    meaning = REFUSALS.get(getattr(exc, "status", None) or 0)
    return f"{meaning}: {redact(str(exc))}" if meaning else redact(str(exc))


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(str(c))) for w, c in zip(widths, row, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    print(fmt.format(*header))
    for row in rows:
        print(fmt.format(*row))


if __name__ == "__main__":
    sys.exit(main())
