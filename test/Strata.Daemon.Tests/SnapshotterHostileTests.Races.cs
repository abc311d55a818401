// SnapshotterHostileTests: two clients at once on one key (Prepare, Commit, Remove, Update), Cleanup among them, and two
// clients asking for one remote snapshot.
using Grpc.Core;
using Strata.Daemon.Snapshotter.Api;

namespace Strata.Daemon.Tests;

public sealed partial class SnapshotterHostileTests
{
    // ---- races ----

    [Fact]
    public async Task TwoClientsPreparingOneKeyMakeOneSnapshot()
    {
        var (one, two) = (NewClient(), NewClient());
        await Committed("base", "base-active");
        var made = new List<string>();
        for (int round = 0; round < 50; round++)
        {
            string key = $"default/{round}/same", parent = round % 2 == 0 ? "" : "base";
            var outcomes = await Task.WhenAll(StatusOf(() => Prepare(key, parent, client: one)), StatusOf(() => Prepare(key, parent, client: two)));
            var codes = outcomes.Select(s => s.StatusCode).Order().ToList();
            // bolt.go: the loser's bucket exists, AlreadyExists (ours also while the winner is still making it)
            Assert.True(codes.SequenceEqual([StatusCode.OK, StatusCode.AlreadyExists]), $"round {round}: {string.Join(", ", outcomes.Select(s => $"{s.StatusCode} {s.Detail}"))}");
            made.Add(key);
        }
        await AssertStoreHolds([.. made, "base"]);
        // and two Removes of one key: one removes it, the other finds it gone (NotFound) or going (FailedPrecondition)
        foreach (var key in made)
        {
            var outcomes = await Task.WhenAll(StatusOf(() => Remove(key, one)), StatusOf(() => Remove(key, two)));
            Assert.Single(outcomes, s => s.StatusCode == StatusCode.OK);
            Assert.Single(outcomes, s => s.StatusCode is StatusCode.NotFound or StatusCode.FailedPrecondition);
        }
        await AssertStoreHolds("base");
    }

    [Fact]
    public async Task CommitRacingRemoveOrAnotherCommitOfOneKeyLeavesOneOutcome()
    {
        var (one, two) = (NewClient(), NewClient());
        var expected = new List<string>();
        for (int round = 0; round < 50; round++)
        {
            string key = $"active-{round}";
            await Prepare(key);
            Status[] outcomes;
            if (round % 2 == 0)
            {
                outcomes = await Task.WhenAll(StatusOf(() => Commit($"c-{round}", key, client: one)), StatusOf(() => Remove(key, two)));
                bool committed = outcomes[0].StatusCode == StatusCode.OK, removed = outcomes[1].StatusCode == StatusCode.OK;
                Assert.True(committed != removed, $"round {round}: commit {outcomes[0]}, remove {outcomes[1]}");
                Assert.True((committed ? outcomes[1] : outcomes[0]).StatusCode is StatusCode.NotFound or StatusCode.FailedPrecondition,
                    $"round {round}: commit {outcomes[0]}, remove {outcomes[1]}");
                if (committed) expected.Add($"c-{round}");
            }
            else
            {
                outcomes = await Task.WhenAll(StatusOf(() => Commit($"c-{round}-one", key, client: one)), StatusOf(() => Commit($"c-{round}-two", key, client: two)));
                int winner = Array.FindIndex(outcomes, s => s.StatusCode == StatusCode.OK);
                Assert.True(winner >= 0 && outcomes[1 - winner].StatusCode is StatusCode.NotFound or StatusCode.FailedPrecondition,
                    $"round {round}: {outcomes[0]}, {outcomes[1]}");
                expected.Add($"c-{round}-{(winner == 0 ? "one" : "two")}");
            }
        }
        await AssertStoreHolds([.. expected]);
        // commits to one name from two keys: one takes the name, the other AlreadyExists and stays active
        var left = new List<string>();
        for (int round = 0; round < 25; round++)
        {
            await Prepare($"x-{round}");
            await Prepare($"y-{round}");
            var outcomes = await Task.WhenAll(StatusOf(() => Commit($"n-{round}", $"x-{round}", client: one)), StatusOf(() => Commit($"n-{round}", $"y-{round}", client: two)));
            int winner = Array.FindIndex(outcomes, s => s.StatusCode == StatusCode.OK);
            Assert.True(winner >= 0 && outcomes[1 - winner].StatusCode == StatusCode.AlreadyExists, $"round {round}: {outcomes[0]}, {outcomes[1]}");
            left.Add($"n-{round}");
            left.Add(winner == 0 ? $"y-{round}" : $"x-{round}");
        }
        await AssertStoreHolds([.. expected, .. left]);
    }

    /// <summary>Cleanup (containerd's GC calls it) while two clients prepare, commit and remove: it removes only layers no
    /// snapshot has, never one being made or one a snapshot still uses, and every call answers as it would alone.</summary>
    [Fact]
    public async Task CleanupRacingPreparesCommitsAndRemovesTakesNothingInUse()
    {
        var (one, two) = (NewClient(), NewClient());
        Task Cleanup(Snapshots.SnapshotsClient client) => client.CleanupAsync(new CleanupRequest { Snapshotter = "strata" }).ResponseAsync;
        var committed = new List<string>();
        for (int round = 0; round < 30; round++)
        {
            string key = $"k-{round}", name = $"c-{round}";
            var outcomes = await Task.WhenAll(StatusOf(() => Prepare(key, round > 0 ? $"c-{round - 1}" : "", client: one)), StatusOf(() => Cleanup(two)));
            Assert.All(outcomes, s => Assert.Equal(StatusCode.OK, s.StatusCode));
            outcomes = await Task.WhenAll(
                StatusOf(() => Commit(name, key, client: one)),
                StatusOf(() => Cleanup(two)),
                StatusOf(() => View($"v-{round}", round > 0 ? $"c-{round - 1}" : "")),
                round > 1 ? StatusOf(() => Remove($"v-{round - 1}")) : Task.FromResult(Status.DefaultSuccess));
            Assert.All(outcomes, s => Assert.Equal(StatusCode.OK, s.StatusCode));
            committed.Add(name);
        }
        await AssertStoreHolds([.. committed, "v-0", "v-29"]);
        // every snapshot's layer is whole: a child of the last one mounts
        Assert.NotEmpty((await Prepare("top", "c-29")).Mounts);
        await AssertStoreHolds([.. committed, "v-0", "v-29", "top"]);
    }

    /// <summary>Two clients unpacking the same image layer that the store already holds (the remote-snapshot label naming
    /// its chain id): both hear AlreadyExists, and one snapshot of that name borrows the layer, nothing copied.</summary>
    [Fact]
    public async Task TwoClientsAskingForOneRemoteSnapshotBorrowTheLayerOnce()
    {
        const string Ref = "containerd.io/snapshot.ref";
        var (one, two) = (NewClient(), NewClient());
        await AssertStoreHolds(); // the service opens the store's snapshots (and an image store, which may sweep unused image layers) first
        for (int round = 0; round < 10; round++)
        {
            // an image imported as `strata image import` does: its layer named by its chain id
            string tar = _temp.Combine($"layer-{round}.tar");
            using (var file = File.Create(tar))
            using (var writer = new System.Formats.Tar.TarWriter(file, System.Formats.Tar.TarEntryFormat.Pax))
                writer.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "round")
                    { DataStream = new MemoryStream(System.Text.Encoding.UTF8.GetBytes($"round {round}")) });
            string chain = _host!.Use(store => new Strata.Core.Images.ImageImporter(Strata.Core.Containers.ContainerStore.For(store).Images)
                .Import(tar, new Strata.Core.Images.ImageImporter.Options { Name = $"img:{round}" }).Single().TopLayer);
            string target = "default/9/sha256:" + chain;
            var outcomes = await Task.WhenAll(
                StatusOf(() => Prepare($"default/{round}/extract-a", labels: Labels((Ref, target)), client: one)),
                StatusOf(() => Prepare($"default/{round}/extract-b", labels: Labels((Ref, target)), client: two)));
            Assert.True(outcomes.All(s => s.StatusCode == StatusCode.AlreadyExists), $"round {round}: {outcomes[0]}, {outcomes[1]}");
            Assert.Equal(Kind.Committed, (await Stat(target)).Kind);
            await AssertStoreHolds(target);
            await Remove(target);
            _host.Use(store => Strata.Core.Containers.ContainerStore.For(store).Images.Remove($"img:{round}", _ => []));
            Assert.False(_host.Use(store => store.Exists(chain))); // returned, and removed with its image
        }
        await AssertStoreHolds();
    }

    /// <summary>Update racing Remove of one key: the Remove wins or waits its turn, the Update answers OK, NotFound or
    /// FailedPrecondition (the key is going), and a label never brings a removed snapshot back.</summary>
    [Fact]
    public async Task UpdateRacingRemoveOfOneKeyNeverBringsItBack()
    {
        var (one, two) = (NewClient(), NewClient());
        for (int round = 0; round < 50; round++)
        {
            string key = $"k-{round}";
            await Prepare(key);
            var info = new Info { Name = key, Labels = { ["round"] = round.ToString() } };
            var outcomes = await Task.WhenAll(
                StatusOf(() => one.UpdateAsync(new UpdateSnapshotRequest { Snapshotter = "strata", Info = info }).ResponseAsync),
                StatusOf(() => Remove(key, two)));
            Assert.True(outcomes[0].StatusCode is StatusCode.OK or StatusCode.NotFound or StatusCode.FailedPrecondition, $"round {round}: update {outcomes[0]}");
            Assert.True(outcomes[1].StatusCode == StatusCode.OK, $"round {round}: remove {outcomes[1]}");
        }
        await AssertStoreHolds();
    }
}
