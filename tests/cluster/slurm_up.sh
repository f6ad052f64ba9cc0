#!/usr/bin/env bash
# Bring up a one-node Slurm cluster on this machine, as a site's test partition would be: Debian's
# slurm-wlm and munge, slurmctld and slurmd on the local host, one partition `debug` holding this
# node with the CPUs and memory `slurmd -C` reads from the machine, and no accounting daemon
# (slurmdbd), so job status comes from squeue (MinJobAge keeps finished jobs visible for 10 min).
#
# Idempotent: when the controller answers and the node is up it changes nothing. Needs root (apt-get,
# the daemons); prints one line and exits 1 otherwise. Daemon logs: /var/log/slurm/.
#   bash tests/cluster/slurm_up.sh
set -euo pipefail

PARTITION=debug
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
WAIT_S=${SLURM_UP_WAIT_S:-90}

node_ready() {
  # idle, or busy with jobs (mixed/allocated); `*` marks a node not responding.
  command -v sinfo >/dev/null && scontrol ping >/dev/null 2>&1 &&
    sinfo -h -N -p "$PARTITION" -o '%t' 2>/dev/null | grep -qxE 'idle|mix(ed)?|alloc(ated)?'
}

if node_ready; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "slurm_up: needs root to install and start slurmctld/slurmd (running as $(id -un))" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm_up: installing slurm-wlm and munge (apt-get)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi

# slurm.conf for this host. Rewritten only when it differs, so a running cluster keeps its config.
host=$(hostname -s)
node_line=$(slurmd -C | head -n 1)
mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
conf=$(cat <<EOF
# Written by tests/cluster/slurm_up.sh: a one-node test cluster without accounting.
ClusterName=wmoe-test
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmdDebug=info
# No cgroups in containers: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay in squeue for 10 minutes: the executor plugin reads their state there.
MinJobAge=600
ReturnToService=2
$node_line State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ ! -f "$CONF_DIR/slurm.conf" ] || [ "$(cat "$CONF_DIR/slurm.conf")" != "$conf" ]; then
  printf '%s\n' "$conf" > "$CONF_DIR/slurm.conf"
  changed=1
else
  changed=0
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# munge: Debian's key is created at install; the daemon runs as the munge user.
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
if ! alive /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done

if [ "$changed" = 1 ] && alive /run/slurmctld.pid; then
  scontrol reconfigure
fi
alive /run/slurmctld.pid || slurmctld
alive /run/slurmd.pid || slurmd

for _ in $(seq "$WAIT_S"); do
  if node_ready; then
    echo "slurm_up: node $host idle in partition $PARTITION ($node_line)"
    exit 0
  fi
  # A node left down or drained by an earlier run (e.g. the machine restarted under it) is resumed.
  if sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(down|drain|drng)'; then
    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
  fi
  sleep 1
done
echo "slurm_up: node $host not idle after ${WAIT_S}s; see $LOG_DIR/slurmctld.log and slurmd.log" >&2
sinfo -N -l >&2 || true
exit 1
