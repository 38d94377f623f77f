"""What a node changes on its host, and how to put it back.

A kubelet, kube-proxy, containerd and the CNI plugins change host-wide state: sysctls (the
kubelet sets `vm.overcommit_memory`, `kernel.panic`, `kernel.panic_on_oops` with no option to
leave them; the CNI bridge turns on `net.ipv4.ip_forward`), iptables chains (KUBE-*, CNI-*),
cgroups (`/kubepods` in every hierarchy), mounts (Secret volumes, container root filesystems,
network namespaces), links, routes and a few directories (`/var/lib/cni`, `/var/log/pods`).

`HostState.capture()` records all of it before the node starts; `restore(before, owner)`
undoes what the node changed after it stops, touching only what the node owns (`Owner`: its
bridge, its chains, its cgroups and paths, the sysctls its parts change) so that nothing else on
the host is harmed; `diff(before, after)` lists everything that still differs (a test asserts
it is empty).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Paths the node's parts may create outside its work directory.
WATCHED_PATHS = (
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/run/netns",
    "/var/lib/kubelet",
    "/etc/cni",
    "/run/containerd",
)
# sysctls that change by themselves (counters, random values, time-dependent state).
VOLATILE_SYSCTL = re.compile(
    r"^(kernel/random/|kernel/ns_last_pid|kernel/pty/nr|fs/(dentry|inode|file)-|fs/quota/"
    r"|fs/aio-nr|net/netfilter/nf_conntrack_count|kernel/tainted|kernel/sched_domain"
    r"|net/ipv4/tcp_mem|net/ipv4/udp_mem|fs/binfmt_misc|kernel/usermodehelper|vm/stat_refresh"
    r"|vm/drop_caches|vm/compact_memory|net/ipv4/route/flush|net/ipv6/route/flush"
    r"|net/ipv4/neigh/|net/ipv6/neigh/|net/ipv4/conf/|net/ipv6/conf/)"
)
# The sysctls a kubelet, kube-proxy and the CNI bridge change: the only ones restored.
NODE_SYSCTLS = re.compile(
    r"^(vm/overcommit_memory|vm/panic_on_oom|kernel/panic|kernel/panic_on_oops|kernel/keys/"
    r"|net/ipv4/ip_forward|net/ipv[46]/conf/(all|default)/(forwarding|route_localnet)"
    r"|net/bridge/|net/netfilter/nf_conntrack_)"
)
# Per-interface sysctls: compared only for interfaces that existed before the node.
IFACE_SYSCTL = re.compile(r"^net/ipv[46]/(conf|neigh)/([^/]+)/")
IPTABLES = ("iptables", "ip6tables")  # the nf_tables variants on Debian 12
TABLES = ("filter", "nat", "mangle", "raw")


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    return result.stdout if result.returncode == 0 else ""


def _sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    root = Path("/proc/sys")
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            key = str(path.relative_to(root))
            match = IFACE_SYSCTL.match(key)
            if VOLATILE_SYSCTL.match(key) and not match:
                continue
            try:
                if not os.access(path, os.R_OK) or not (path.stat().st_mode & 0o444):
                    continue
                values[key] = path.read_text().strip()
            except OSError:
                continue
    return values


def _rules() -> dict[str, list[str]]:
    """`iptables -t T -S` per binary and table, e.g. {"iptables nat": [...]}."""
    found: dict[str, list[str]] = {}
    for binary in IPTABLES:
        if shutil.which(binary) is None:
            continue
        for table in TABLES:
            found[f"{binary} {table}"] = _run(binary, "-w", "-t", table, "-S").splitlines()
    return found


def _nft_tables() -> frozenset[str]:
    """The nftables tables (iptables-nft makes `ip nat`, `ip6 filter`, ... on first use)."""
    if shutil.which("nft") is None:
        return frozenset()
    return frozenset(line.strip() for line in _run("nft", "list", "tables").splitlines())


def _cgroups() -> set[str]:
    """Cgroup directories two levels deep in every hierarchy (v1) or the unified tree."""
    found: set[str] = set()
    root = Path("/sys/fs/cgroup")
    for path in root.glob("*"):
        if path.is_dir():
            found.add(str(path))
            found.update(str(child) for child in path.glob("*") if child.is_dir())
    return found


def _mounts() -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return sorted(line.split()[4] for line in lines)


@dataclass(frozen=True)
class HostState:
    sysctls: dict[str, str]
    rules: dict[str, list[str]]
    tables: frozenset[str]
    cgroups: frozenset[str]
    mounts: tuple[str, ...]
    links: frozenset[str]
    routes: tuple[str, ...]
    paths: frozenset[str]

    @classmethod
    def capture(cls) -> HostState:
        links = frozenset(
            line.split()[0].split("@")[0] for line in _run("ip", "-br", "link").splitlines()
        )
        return cls(
            sysctls=_sysctls(),
            rules=_rules(),
            tables=_nft_tables(),
            cgroups=frozenset(_cgroups()),
            mounts=tuple(_mounts()),
            links=links,
            routes=tuple(sorted(_run("ip", "route", "show", "table", "all").splitlines())),
            paths=frozenset(p for p in WATCHED_PATHS if Path(p).exists()),
        )

    def save(self, path: Path) -> None:
        data = {
            name: sorted(value) if isinstance(value, frozenset | tuple) else value
            for name, value in self.__dict__.items()
        }
        path.write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> HostState:
        data = json.loads(path.read_text())
        return cls(
            sysctls=data["sysctls"],
            rules=data["rules"],
            tables=frozenset(data["tables"]),
            cgroups=frozenset(data["cgroups"]),
            mounts=tuple(data["mounts"]),
            links=frozenset(data["links"]),
            routes=tuple(data["routes"]),
            paths=frozenset(data["paths"]),
        )


def diff(before: HostState, after: HostState) -> list[str]:
    """Everything that differs between two captures, one line each."""
    problems: list[str] = []
    for key in sorted(set(before.sysctls) | set(after.sysctls)):
        match = IFACE_SYSCTL.match(key)
        if match and match.group(2) not in before.links | {"all", "default"}:
            continue
        if VOLATILE_SYSCTL.match(key) and not match:
            continue
        old, new = before.sysctls.get(key), after.sysctls.get(key)
        if old is not None and new is not None and old != new:
            problems.append(f"sysctl {key.replace('/', '.')}: {old!r} -> {new!r}")
    for table in sorted(set(before.rules) | set(after.rules)):
        old_rules = set(before.rules.get(table, []))
        for rule in after.rules.get(table, []):
            if rule not in old_rules:
                problems.append(f"{table}: {rule}")
    problems += [f"nftables {t} left" for t in sorted(after.tables - before.tables)]
    problems += [f"cgroup left: {c}" for c in sorted(after.cgroups - before.cgroups)]
    old_mounts = list(before.mounts)
    for mount in after.mounts:
        if mount in old_mounts:
            old_mounts.remove(mount)
        else:
            problems.append(f"mount left: {mount}")
    problems += [f"link left: {link}" for link in sorted(after.links - before.links)]
    problems += [f"route left: {r}" for r in sorted(set(after.routes) - set(before.routes))]
    problems += [f"path left: {p}" for p in sorted(after.paths - before.paths)]
    return problems


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    """Whether `path` is one of `prefixes` or below one, by whole path components."""
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _unmount_new(before: HostState, prefixes: tuple[str, ...]) -> None:
    """Unmount the mounts made since `before` below `prefixes`, deepest first; mounts that
    were there before stay, wherever they are."""
    for _ in range(5):
        old = list(before.mounts)
        new = []
        for mount in _mounts():
            if mount in old:
                old.remove(mount)
            elif _under(mount, prefixes):
                new.append(mount)
        if not new:
            return
        for mount in sorted(new, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


def _remove_cgroup_tree(path: Path) -> None:
    for child in sorted(
        (p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def _ours(rule: str, owner: Owner) -> bool:
    return any(marker in rule for marker in owner.rule_markers)


def _restore_rules(before: HostState, owner: Owner) -> None:
    """Drop the chains the node's parts made (KUBE-*, CNI-*) and the rules that jump to them
    or name its bridge; other rules are left alone, new or not."""
    for table_key, rules in _rules().items():
        binary, table = table_key.split()
        old = set(before.rules.get(table_key, []))
        new_chains = [
            shlex.split(r)[1]
            for r in rules
            if r.startswith("-N ") and r not in old and _ours(r, owner)
        ]
        for chain in new_chains:  # drops every rule in them, jumps between them included
            _run(binary, "-w", "-t", table, "-F", chain)
        for rule in rules:
            if rule.startswith("-A ") and rule not in old and _ours(rule, owner):
                argv = shlex.split(rule)  # comments are quoted: "kubernetes service portals"
                argv[0] = "-D"
                subprocess.run([binary, "-w", "-t", table, *argv], capture_output=True, check=False)
        for chain in new_chains:
            _run(binary, "-w", "-t", table, "-X", chain)


def _empty_nft_table(table: str) -> bool:
    """Whether an nftables table ("table ip nat") holds chains with no rule in them."""
    listing = _run("nft", "list", *table.split())
    body = [line.strip() for line in listing.splitlines()[1:]]
    return all(not line or line == "}" or line.startswith(("chain ", "type ")) for line in body)


@dataclass(frozen=True)
class Owner:
    """What a node may remove: its bridge, its chains and what names them, the cgroups and
    paths its parts create, the sysctls they change. Nothing else is touched; anything else
    that changed is only reported."""

    workdir: Path
    bridge: str
    rule_markers: tuple[str, ...] = ("KUBE-", "CNI-")
    cgroup_names: tuple[str, ...] = ("kubepods",)
    paths: tuple[str, ...] = ("/var/lib/cni", "/var/log/pods", "/var/log/containers")
    sysctls: re.Pattern[str] = NODE_SYSCTLS


def restore(before: HostState, owner: Owner) -> list[str]:
    """Undo what the node changed since `before` (its processes must be gone); return
    whatever still differs from `before`."""
    _unmount_new(before, (str(owner.workdir), *WATCHED_PATHS))
    after = HostState.capture()
    for key, value in before.sysctls.items():
        if owner.sysctls.match(key) and after.sysctls.get(key) not in (None, value):
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / key).write_text(value)
    _restore_rules(before, owner)
    for table in sorted(_nft_tables() - before.tables):  # e.g. "table ip nat", made on use
        if _empty_nft_table(table):
            subprocess.run(["nft", "delete", *table.split()], capture_output=True, check=False)
    for cgroup in sorted(after.cgroups - before.cgroups, key=len):
        if Path(cgroup).name.startswith(owner.cgroup_names):
            _remove_cgroup_tree(Path(cgroup))
    if owner.bridge in after.links - before.links:  # its routes go with it
        subprocess.run(["ip", "link", "del", owner.bridge], capture_output=True, check=False)
    for path in sorted(after.paths - before.paths):
        if path in owner.paths:
            shutil.rmtree(path, ignore_errors=True)
    # the kubelet's links to container logs, in a /var/log/containers that was already there
    for log_link in Path("/var/log/containers").glob("*.log"):
        if log_link.is_symlink() and str(owner.workdir) in str(log_link.readlink()):
            log_link.unlink()
    return diff(before, HostState.capture())
