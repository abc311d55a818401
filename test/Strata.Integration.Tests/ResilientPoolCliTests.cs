using System.Text.Json.Nodes;
using Strata.Testing;

namespace Strata.Integration.Tests;

/// <summary>
/// `strata pool create --disk ...` and `pool disk ls` through the real binary, over disks that are files: Storage
/// Spaces' capacity rule, the status documents and their schemas, data that comes back whole after one disk's file is
/// overwritten with dd (and is repaired on that disk), an IO error (never wrong bytes) from a simple pool whose only copy
/// rotted, and refusals of what cannot make a pool.
/// </summary>
public sealed class ResilientPoolCliTests : IDisposable
{
    readonly TempRoot _temp = new();
    readonly Cli _cli;

    public ResilientPoolCliTests() => _cli = new Cli(_temp.Combine("store"));

    public void Dispose() => _temp.Dispose();

    string[] Pool(params string[] args) => ["pool", "--pool", _temp.Combine("pool"), .. args];

    [Fact]
    public void AMirrorOfDisksOf1_1_2GiBHoldsAbout2GiB()
    {
        _cli.Ok(Pool("create", "--disk", _temp.Combine("d1") + ",size=1G", "--disk", _temp.Combine("d2") + ",size=1G", "--disk", _temp.Combine("d3") + ",size=2G"));
        string json = _cli.Ok(Pool("info", "--format", "json"));
        JsonSchemas.AssertValid("pool-info", json);
        var info = JsonNode.Parse(json)!;
        Assert.Equal("mirror", info["Resiliency"]!.GetValue<string>());
        Assert.Equal("healthy", info["Health"]!.GetValue<string>());
        long usable = info["UsableSpace"]!.GetValue<long>();
        Assert.InRange(usable, (19L << 30) / 10, 2L << 30); // at least 1.9 GiB: md's mirror of these disks holds 1 GiB
        Assert.Equal(usable, info["DataSpaceTotal"]!.GetValue<long>());
        Assert.Equal(3, info["Disks"]!.AsArray().Count);

        string disks = _cli.Ok(Pool("disk", "ls", "--format", "json"));
        JsonSchemas.AssertValid("pool-disk", disks, array: true);
        Assert.Equal([_temp.Combine("d1"), _temp.Combine("d2"), _temp.Combine("d3")], _cli.Ok(Pool("disk", "ls", "-q")).Split('\n'));
        Assert.Contains("healthy", _cli.Ok(Pool("disk", "ls")));
    }

    [Theory]
    [InlineData("mirror", 2)]
    [InlineData("mirror3", 3)]
    [InlineData("parity", 3)]
    [InlineData("parity2", 4)]
    public void ADiskOverwrittenWithDdReadsBackWholeAndIsRepaired(string resiliency, int count)
    {
        var disks = Enumerable.Range(0, count).Select(i => _temp.Combine($"d{i}")).ToArray();
        _cli.Ok([.. Pool("create", "--resiliency", resiliency, "--slab-size", "4M", "--metadata-size", "4M"), .. disks.SelectMany(d => new[] { "--disk", d + ",size=64M" })]);
        _cli.Ok(Pool("device", "create", "v", "--size", "16M"));
        var payload = new byte[12 << 20];
        new Random(7).NextBytes(payload);
        _cli.Run(payload, Pool("device", "write", "v"));
        // dd garbage over the slabs of one disk (after its label and metadata copy)
        var garbage = new byte[8 << 20];
        new Random(8).NextBytes(garbage);
        Shell.Run("sh", "-c", $"head -c {garbage.Length} /dev/urandom | dd of={disks[^1]} bs=1M seek=5 conv=notrunc status=none").Check("dd");
        var before = File.ReadAllBytes(disks[^1]);
        Assert.Equal(payload, ReadDevice(12 << 20));
        var after = File.ReadAllBytes(disks[^1]);
        Assert.NotEqual(before, after); // what the read found wrong on that disk was rewritten there
        Assert.Equal(payload, ReadDevice(12 << 20));
        var check = _cli.Run(Pool("check"));
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
    }

    [Fact]
    public void ASimplePoolReadsRotAsAnErrorNeverAsData()
    {
        string disk = _temp.Combine("d0");
        _cli.Ok(Pool("create", "--disk", disk + ",size=64M", "--slab-size", "4M", "--metadata-size", "4M"));
        Assert.Equal("simple", JsonNode.Parse(_cli.Ok(Pool("info", "--format", "json")))!["Resiliency"]!.GetValue<string>());
        _cli.Ok(Pool("device", "create", "v", "--size", "4M"));
        var payload = new byte[1 << 20];
        new Random(9).NextBytes(payload);
        _cli.Run(payload, Pool("device", "write", "v"));
        // the first data block lies at the start of the first slab, at 5 MiB (label and 4 MiB of metadata, rounded up)
        Shell.Run("sh", "-c", $"printf 'rot' | dd of={disk} bs=1 seek={(5 << 20) + 1000} conv=notrunc status=none").Check("dd");
        var r = _cli.Run(Pool("device", "read", "v", "--length", "65536"));
        Assert.Equal(1, r.ExitCode);
        Errors.AssertOneLine(r);
        Assert.Contains("fails its checksum", r.Stderr);
        Assert.Equal(0, r.Stdout.Length);
    }

    [Fact]
    public void WhatCannotMakeAPoolIsRefusedInOneLine()
    {
        string d = _temp.Combine("x");
        AssertRefused(2, "needs at least 3 disks", "create", "--resiliency", "mirror3", "--disk", d + "1,size=64M", "--disk", d + "2,size=64M");
        AssertRefused(2, "give its size", "create", "--disk", d + "3");
        AssertRefused(2, "unknown resiliency 'raid5'", "create", "--resiliency", "raid5", "--disk", d + "4,size=64M");
        AssertRefused(2, "--data-size is for a pool on a data and a metadata store", "create", "--data-size", "1G", "--disk", d + "5,size=64M");
        AssertRefused(2, "--resiliency is for a pool over disks", "create", "--resiliency", "mirror");
        AssertRefused(2, "unknown --checksum 'md5'", "create", "--checksum", "md5", "--disk", d + "6,size=64M");
        Assert.False(File.Exists(d + "1") || File.Exists(d + "4") || File.Exists(d + "6"), "a refused create leaves no disk file behind");
        _cli.Ok(Pool("create", "--disk", d + "7,size=64M", "--slab-size", "4M"));
        var again = _cli.Run("pool", "--pool", _temp.Combine("other"), "create", "--disk", d + "7");
        Assert.Equal(4, again.ExitCode);
        Errors.AssertOneLine(again);
        Assert.Contains("is already a disk of a Strata pool", again.Stderr);
        var plain = _cli.Run("pool", "--pool", _temp.Combine("plain"), "disk", "ls");
        Assert.NotEqual(0, plain.ExitCode);
    }

    void AssertRefused(int code, string message, params string[] args)
    {
        var r = _cli.Run(Pool(args));
        Assert.True(r.ExitCode == code, $"exit {r.ExitCode}: {r.Stderr}");
        Errors.AssertOneLine(r);
        Assert.Contains(message, r.Stderr);
    }

    byte[] ReadDevice(int length)
    {
        string file = _temp.Combine("read.out");
        _cli.Ok(Pool("device", "read", "v", "--length", length.ToString(System.Globalization.CultureInfo.InvariantCulture), "-o", file));
        return File.ReadAllBytes(file);
    }
}
