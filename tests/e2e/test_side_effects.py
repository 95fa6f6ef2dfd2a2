"""A teacher's run dir is only read by the run that distils from it."""

from tests.helpers import TINY, run_train


def test_a_teacher_run_dir_is_only_read(tmp_path):
    teacher = tmp_path / "teacher"
    assert run_train(teacher, *TINY, "mode=classical").returncode == 0
    before = {p: p.stat().st_mtime_ns for p in teacher.rglob("*")}
    proc = run_train(tmp_path / "student", *TINY, "loss=kd", f"loss.teacher={teacher}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in teacher.rglob("*")} == before  # nothing written, nothing added
