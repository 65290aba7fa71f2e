"""Print the evidence on which predictor to trust, as Markdown tables.

What the "Which predictor to trust" page shows, for every finished fine-tuning ground truth
on this site: each predictor's (and reference's) weighted Kendall tau per dataset and on
average, Kendall tau and top-1 relative accuracy on average, and the chooser's
leave-one-dataset-out check. ``docs/science.md`` section 8 was written from its output
after ``make demo``.
"""

from django.core.management.base import BaseCommand

from transferability.predictors import flag_vote_study, predictor_report


def _f(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


class Command(BaseCommand):
    help = "Print every predictor's agreement with the site's fine-tuning ground truths."

    def add_arguments(self, parser):
        parser.add_argument("--evaluations", default="",
                            help="comma-separated evaluation ids: only their ground truths")

    def handle(self, *args, **options):
        ids = [int(i) for i in options["evaluations"].split(",") if i.strip()]
        report = predictor_report(evaluations=ids or None)
        datasets = report["datasets"]
        if not datasets:
            self.stdout.write("No fine-tuning ground truth has finished on this site.")
            return
        write = self.stdout.write
        write("| dataset | checkpoints | true accuracy, % | TMI floored |")
        write("|---|---|---|---|")
        for d in datasets:
            share = d["tmi_floored_share"]
            write(f"| {d['label']} | {d['checkpoints']} | {d['truth_range'][0]:.1f}-"
                  f"{d['truth_range'][1]:.1f} | {'–' if share is None else f'{100 * share:.0f} %'} |")
        write("")
        short = [d["name"].split(" (evaluation")[0] for d in datasets]
        write("| predictor | kind | " + " | ".join(short) + " | mean weighted τ | mean Kendall τ "
              "| mean top-1 rel. | worst top-1 rel. |")
        write("|---|---|" + "---|" * len(short) + "---|---|---|---|")
        for row in report["rows"]:
            kind = "form of TMI" if row["variant_of"] else row["kind"]
            cells = [_f(row["per_dataset"][d["name"]]["weighted_tau"]) for d in datasets]
            write(f"| {row['label']} | {kind} | " + " | ".join(cells) +
                  f" | {_f(row['weighted_tau'])} | {_f(row['kendall_tau'])} | "
                  f"{_f(row['top1_relative_accuracy'], 3)} | "
                  f"{_f(row['worst_top1_relative_accuracy'], 3)} |")
        write("")
        if report["methods"]:
            write("| way of choosing | " + " | ".join(f"{s} left out" for s in short)
                  + " | mean |")
            write("|---|" + "---|" * len(short) + "---|")
            for m in report["methods"]:
                cells = [f"{_f(f['weighted_tau'])} ({f['pick']})" for f in m["folds"]]
                kept = " (kept)" if m["kept"] else ""
                write(f"| {m['label']}{kept} | " + " | ".join(cells) + f" | {_f(m['mean'])} |")
            best = report["best_single"]
            if best:
                write("")
                write(f"Best fixed single predictor in hindsight: {best['label']}, mean weighted "
                      f"τ {_f(best['weighted_tau'])}. Lead: "
                      f"{report['lead'].label if report['lead'] else 'the default'}.")
        else:
            write(f"Fewer than {report['min_datasets']} datasets: the default lead applies.")
        write("")
        write("Flagged values voting or left out (weighted τ / top-1 relative accuracy):")
        write("")
        write("| dataset | flagged cells | lead consensus, voting | lead consensus, left out "
              "| established consensus, voting | established consensus, left out |")
        write("|---|---|---|---|---|---|")
        for d in flag_vote_study(ids or None):
            cells = [f"{_f(d[k]['weighted_tau'])} / {_f(d[k]['top1_relative_accuracy'], 3)}"
                     for k in ("lead_voting", "lead_left_out", "consensus_voting",
                               "consensus_left_out")]
            write(f"| {d['dataset']} (evaluation {d['evaluation']}) | {d['flagged_cells']} | "
                  + " | ".join(cells) + " |")
