#!/usr/bin/env bash
# Checks that our .proto files (src/Strata.Daemon/Snapshotter/Protos) carry containerd's wire contract exactly:
# both are compiled to descriptors with the protoc that Grpc.Tools ships, and everything the wire depends on
# (packages, messages, fields with numbers, labels and types, enums, services, methods, streaming) must be
# identical; options (gogoproto, go_package, csharp_namespace), file names and comments may differ.
# Needs: golang-github-containerd-containerd-dev (containerd's .proto files and gogo.proto), python3, and a
# restored build (for Grpc.Tools' protoc in the NuGet cache).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
daemon="$(cd "$here/../../src/Strata.Daemon" && pwd)"
gocode=/usr/share/gocode/src
theirs=github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto
[ -f "$gocode/$theirs" ] || { echo "check-proto: $gocode/$theirs is missing (apt-get install golang-github-containerd-containerd-dev)" >&2; exit 1; }
version=$(sed -n 's/.*Include="Grpc.Tools" Version="\([^"]*\)".*/\1/p' "$daemon/Strata.Daemon.csproj")
case "$(uname -m)" in x86_64) arch=linux_x64 ;; aarch64) arch=linux_arm64 ;; *) arch="linux_$(uname -m)" ;; esac
tools="${NUGET_PACKAGES:-$HOME/.nuget/packages}/grpc.tools/$version"
protoc="$tools/tools/$arch/protoc"
include="$tools/build/native/include"
[ -x "$protoc" ] || { echo "check-proto: no protoc at $protoc (build Strata.Daemon first: dotnet restore)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The descriptors as text, without what does not reach the wire.
contract() {
  "$protoc" -I"$include" --decode=google.protobuf.FileDescriptorSet google/protobuf/descriptor.proto < "$1" | python3 -c '
import re, sys
for f in re.split(r"(?m)^file \{\n", sys.stdin.read())[1:]:
    m = re.search(r"^  package: \"([^\"]+)\"", f, re.M)
    if m and (m.group(1).startswith("google.protobuf") or m.group(1) == "gogoproto"):
        continue
    depth, skip = 0, None
    for line in f.splitlines():
        s = line.strip()
        if skip is None and re.match(r"(options|source_code_info) \{", s):
            skip = depth
        if s.endswith("{"):
            depth += 1
        if s == "}":
            depth -= 1
        if skip is not None:
            if depth == skip and s == "}":
                skip = None
            continue
        if re.match(r"(name: \".*\.proto\"|dependency:|weak_dependency:|json_name:)", s):
            continue
        print(line)
'
}

"$protoc" -I"$gocode" -I"$gocode/github.com/gogo/protobuf" -I"$include" --include_imports \
  --descriptor_set_out="$work/theirs.pb" "$theirs"
"$protoc" -I"$daemon" -I"$include" --include_imports \
  --descriptor_set_out="$work/ours.pb" Snapshotter/Protos/snapshots.proto
contract "$work/theirs.pb" > "$work/theirs.txt"
contract "$work/ours.pb" > "$work/ours.txt"
if ! diff -u "$work/theirs.txt" "$work/ours.txt"; then
  echo "check-proto: our .proto files differ from containerd's wire contract (- containerd, + ours)" >&2
  exit 1
fi
echo "check-proto: our .proto files carry containerd's contract ($(grep -c 'number:' "$work/ours.txt") fields, $(grep -c 'input_type:' "$work/ours.txt") RPCs)"
