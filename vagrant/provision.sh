#!/bin/sh
# The lab's one provisioning script, for Vagrant and for `lab qemu` alike.
#
#   provision.sh packages            Debian packages the guest needs (lab qemu
#                                    passes them to debootstrap)
#   provision.sh install             apt-get them, the running kernel's headers
#                                    and a compiler (Vagrant)
#   provision.sh build SRC           build SRC/vagrant/module/kleaklab.ko for the
#                                    running kernel (Vagrant; lab qemu builds it
#                                    on the host)
#   provision.sh run SRC OUT         load the module, trace the scenarios with
#                                    kleaktrace from SRC, check, write OUT/
#   provision.sh all SRC OUT         install, build, run
set -eu
PACKAGES="python3-bpfcc bpfcc-tools python3-click python3-numpy kmod"

say() { echo "lab: $*"; }

run() {
	src=$1 out=$2
	mkdir -p "$out"
	mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
	ko=$src/vagrant/module/kleaklab.ko
	[ -f "$ko" ] || { say "no module at $ko (provision.sh build first)"; exit 1; }
	lsmod | grep -q '^kleaklab ' && rmmod kleaklab
	insmod "$ko"
	if [ -f "$src/experiment" ]; then  # lab qemu --experiment NAME
		say "running experiment $(cat "$src/experiment")"
		python3 "$src/vagrant/experiments/$(cat "$src/experiment").py" "$out"
		return
	fi
	say "module loaded; tracing the scenarios (the BPF compile takes about a minute under emulation)"
	cd "$src"
	# -c: probes attach before the driver starts; the session ends when it and
	# the processes it forks (the churn decoy, --children) have exited, so what
	# is left outstanding is what the modules leaked
	# --stack-slots: the churn's thousands of fork/exec stacks would fill the
	# default 16,384 (a collision cost 7.2's fentry pathref its stacks once)
	# --scan-via both: the holder scan reads kernel memory with BPF and through
	# /proc/kcore (these kernels have it), and the two must agree object for object
	# --scan-limit: a read of memory takes 25-50 s in these emulated guests,
	# past 60 s beside CI's load (a CI run's bookworm: 120 s for both, its
	# verdicts lost); 300 s each keeps the guest within its 900 s
	PYTHONPATH=$src python3 -m bpftrace_leak.cli --children --stack-slots 65536 --scan-via both --scan-limit 300 \
		-c "python3 $src/vagrant/driver.py --expect $out/expected.json" \
		--format json --top 100000 --min-age 1000ms > "$out/report.json"
	# the session above takes fentry where the kernel allows it (6.1 does);
	# the reference scenarios again through the kprobe fallback
	say "reference scenarios again with --refs-via kprobe"
	PYTHONPATH=$src python3 -m bpftrace_leak.cli --kinds refs --refs-via kprobe --no-scan \
		-c "python3 $src/vagrant/driver.py --only pathref,decoy_ref --expect $out/expected-kprobe.json" \
		--format json --top 100000 --min-age 1000ms > "$out/report-kprobe.json"
	# and once more with neither: the reference census alone, as on kernels
	# without kprobes or fentry, must find pathref's leaked references
	say "reference scenarios again with --refs-via none (the reference census)"
	PYTHONPATH=$src python3 -m bpftrace_leak.cli --refs-via none --no-scan \
		-c "python3 $src/vagrant/driver.py --only pathref,decoy_ref --expect $out/expected-census.json" \
		--format json --top 100000 --min-age 1000ms > "$out/report-census.json"
	PYTHONPATH=$src python3 "$src/vagrant/labcheck.py" "$out/expected.json" "$out/report.json" "$out" \
		kprobe "$out/expected-kprobe.json" "$out/report-kprobe.json" \
		census "$out/expected-census.json" "$out/report-census.json"
}

case "${1:-}" in
packages)
	echo "$PACKAGES"
	;;
install)
	# a box made by vagrant/lab vagrant has them all: no network needed then
	missing=""
	for p in $PACKAGES "linux-headers-$(uname -r)" make gcc; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	if [ -z "$missing" ]; then
		say "the packages are installed"
	else
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
	fi
	;;
build)
	make -C "/lib/modules/$(uname -r)/build" M="$2/vagrant/module" modules
	;;
run)
	run "$2" "$3"
	;;
all)
	"$0" install
	"$0" build "$2"
	run "$2" "$3"
	;;
*)
	echo "usage: $0 packages | install | build SRC | run SRC OUT | all SRC OUT" >&2
	exit 2
	;;
esac
