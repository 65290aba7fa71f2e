"""A transfer's own page (its steps, their figures and charts) and its cancel button."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from . import charts
from .models import Status, Transfer
from .submission import SubmissionError
from .transfers import cancel_transfer


@login_required
def transfer_detail(request, pk):
    transfer = get_object_or_404(
        Transfer.objects.select_related("evaluation__dataset", "teacher", "student",
                                        "result_checkpoint"), pk=pk, owner=request.user)
    steps = list(transfer.steps.select_related("teacher"))
    teachers = [s.teacher.name for s in steps if s.teacher_id]
    # The parallel form is one run in which every teacher takes part: one row, named so.
    together = transfer.mode == Transfer.Mode.PARALLEL and len(steps) > 1
    if together:
        steps = steps[:1]
    for s in steps:
        s.shown_label = f"all {len(teachers)} teachers at once" if together else s.label
    done = [s for s in steps if s.status == Status.DONE and s.accuracy is not None]
    before = (transfer.delta or {}).get("accuracy_before") or next(
        ((s.delta or {}).get("accuracy_before") for s in done if s.delta), None)
    accuracy = (transfer.details or {}).get("teacher_accuracy", {})
    guided = next((s.details.get("guided") for s in done if s.details.get("guided")), None)
    return render(request, "transferability/transfer_detail.html", {
        "transfer": transfer, "steps": steps, "teachers": teachers, "together": together,
        # Sequential runs and soups train once per teacher: their gain is not like for like
        # with one teacher's run of transfer.epochs (docs/science.md 5.1).
        "epochs_in_all": transfer.epochs * len(teachers)
        if len(teachers) > 1 and not together else None,
        "teacher_headers": [(t, accuracy.get(t)) for t in teachers],
        "step_rows": [(s, [(s.flips or {}).get(t) for t in teachers]) for s in steps],
        "accuracy_chart": charts.transfer_accuracy(
            [(s.shown_label, s.accuracy) for s in done], before, accuracy) if done else "",
        "flips_chart": charts.transfer_flips([(s.shown_label, s.delta) for s in done if s.delta])
        if done else "",
        "guided_chart": charts.transfer_guidance(guided, transfer.evaluation.dataset.class_names)
        if guided else "",
        "cancel_question": f"Cancel transfer {transfer.pk} ({' + '.join(teachers)} into "
                           f"{transfer.student.name})? Its worker stops at the next batch and "
                           f"no checkpoint is saved; the steps already done keep their figures.",
    })


@login_required
@require_POST
def transfer_cancel(request, pk):
    transfer = get_object_or_404(Transfer, pk=pk, owner=request.user)
    try:
        cancel_transfer(transfer)
    except SubmissionError as exc:
        messages.error(request, f"Transfer {pk} not cancelled: {exc}.")
    else:
        messages.success(request, f"Transfer {pk} cancelled: no checkpoint will be saved.")
    return redirect(transfer)
