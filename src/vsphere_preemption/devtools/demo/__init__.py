"""`preemptctl demo`: the whole system against a vcsim it starts, one alarm raised and lowered.

`run` drives it; `inventory` prepares the simulator, `events` builds the alarm CloudEvents,
`sink` receives the VmPreemptedEvent, `progress` narrates the workflow from its history,
`checks` decides pass or fail, `report` prints.
"""
