"""Proof that payweave loses no payment and never moves money twice (project issue #11).

``payweave reliability [--size ci|soak]`` runs randomized fault schedules (in-process, plus real
SIGKILLs of worker processes), checks after each that the PSP's ledger, payweave's store and
BC's books agree (:mod:`.checker`), and prints what was tried and what held (:mod:`.report`).
The pieces:

* :mod:`.faults`  the fault kinds, points and the controller that fires them;
* :mod:`.chaos`   plugin wrappers and the database hook that inject the faults;
* :mod:`.world`   the store, the mock PSP, the BC sandbox and the clock of a run;
* :mod:`.flows`   the operations (capture, void, refund, credit, link, write-back, sync) as steps;
* :mod:`.schedule` one schedule: flow, faults, client retries, recovery, checks;
* :mod:`.sigkill` schedules whose process is really killed;
* :mod:`.runner`  a whole run and its report.
"""
