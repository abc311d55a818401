// Issue 21: how a store is opened (StoreMode): readers change nothing and share the lock; a first open that fails
// takes back what it made.
using System.Text.Json.Nodes;
using Strata.Testing;

namespace Strata.Core.Tests;

public sealed class StoreOpenModeTests : IDisposable
{
    readonly TempRoot _temp = new();

    string Root => _temp.Combine("store");

    LayerStore Open(StoreMode mode = StoreMode.Create, TimeSpan? wait = null) =>
        LayerStore.Open(new StoreOptions { Root = Root, Driver = mode == StoreMode.Create ? "vfs" : null, Mode = mode, LockWait = wait ?? TimeSpan.FromSeconds(5) });

    public void Dispose() => _temp.Dispose();

    [Theory]
    [InlineData(StoreMode.ReadOnly)]
    [InlineData(StoreMode.Existing)]
    public void WithoutAStoreOnlyCreateMakesOne(StoreMode mode)
    {
        var ex = Assert.Throws<StrataException>(() => Open(mode));
        Assert.Equal((ErrorKind.NotFound, $"no store at {Root} (`strata init`, or any command that writes, creates one)"), (ex.Kind, ex.Message));
        Assert.False(Directory.Exists(Root));
        Assert.False(LayerStore.ExistsAt(Root));
        Open().Dispose();
        Assert.True(LayerStore.ExistsAt(Root));
        using var store = Open(mode);
        Assert.Equal("vfs", store.Driver.Name);
    }

    [Fact]
    public void AReaderRefusesEveryWriteAndShowsNoHalfMadeLayer()
    {
        using (var writer = Open())
        {
            writer.Create("base", null);
            writer.Create("half", "base");
        }
        // a crash mid-apply leaves a record marked incomplete, which the next writer's recovery removes
        string record = Path.Combine(Root, "layers", "half.json");
        var json = JsonNode.Parse(File.ReadAllText(record))!;
        json["Incomplete"] = true;
        File.WriteAllText(record, json.ToJsonString());
        using var reader = Open(StoreMode.ReadOnly);
        Assert.True(reader.ReadOnly);
        Assert.Equal(["base"], reader.List().Select(l => l.Id));
        Assert.Equal(ErrorKind.NotFound, Assert.Throws<StrataException>(() => reader.Inspect("half")).Kind);
        foreach (var write in new Action[] { () => reader.Create("x", null), () => reader.Remove("base"), () => reader.Mount("base"), () => reader.Unmount("base") })
        {
            var ex = Assert.Throws<StrataException>(write);
            Assert.Equal((ErrorKind.ReadOnly, $"store {reader.Root} is open for reading only (a listing); this command cannot change it"), (ex.Kind, ex.Message));
        }
        Assert.True(File.Exists(record), "the reader ran recovery");
    }

    [Fact]
    public void ReadersShareTheLockAndAWriterWaitsForThem()
    {
        Open().Dispose();
        using var first = Open(StoreMode.ReadOnly);
        using (var second = Open(StoreMode.ReadOnly, TimeSpan.Zero))
            Assert.Empty(second.List());
        var waited = new List<string>();
        var ex = Assert.Throws<StrataException>(() => LayerStore.Open(new StoreOptions { Root = Root, LockWait = TimeSpan.Zero, Waiting = waited.Add }));
        Assert.Equal(ErrorKind.InUse, ex.Kind);
        Assert.StartsWith($"store {Root} is in use by ", ex.Message);
        Assert.Single(waited);
    }

    [Fact]
    public void AWriterKeepsReadersOut()
    {
        using var writer = Open();
        var ex = Assert.Throws<StrataException>(() => Open(StoreMode.ReadOnly, TimeSpan.Zero));
        Assert.Equal(ErrorKind.InUse, ex.Kind);
    }

    [Fact]
    public void AFirstOpenThatFailsRemovesWhatItMadeOnly()
    {
        string dir = _temp.Dir("mine");
        File.WriteAllText(Path.Combine(dir, "notes"), "keep\n");
        var ex = Assert.Throws<StrataException>(() => LayerStore.Open(new StoreOptions
        {
            Root = dir, Driver = "overlay", DriverOptions = new Dictionary<string, string> { ["overlay.mount_program"] = "relative" },
        }));
        Assert.Equal(ErrorKind.InvalidArgument, ex.Kind);
        Assert.Equal([Path.Combine(dir, "notes")], Directory.GetFileSystemEntries(dir));
        string deep = _temp.Combine("a", "b", "store");
        Assert.Throws<StrataException>(() => LayerStore.Open(new StoreOptions { Root = deep, Driver = "zfs" }));
        Assert.False(Directory.Exists(_temp.Combine("a")));
    }

    [Fact]
    public void AFailedOpenOfAStoreThatExistsRemovesNothing()
    {
        Open().Dispose();
        var before = Directory.GetFileSystemEntries(Root).Order().ToList();
        Assert.Throws<StrataException>(() => LayerStore.Open(new StoreOptions { Root = Root, Driver = "overlay" }));
        Assert.Equal(before, Directory.GetFileSystemEntries(Root).Order().ToList());
    }
}
