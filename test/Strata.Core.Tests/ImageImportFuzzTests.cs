using System.Globalization;
using Strata.Core.Images;
using Xunit.Abstractions;

namespace Strata.Core.Tests;

/// <summary>
/// Imports of randomly broken images (<see cref="ImageMutator"/>): OCI layouts, oci-archives, docker-archives and
/// their directories. Whatever the break, an import either succeeds or fails with a StrataException whose message is
/// one line; it never hangs (a watchdog fails the run naming the seed, the iteration and the break); a failed import
/// leaves the store's images, layers and blobs as they were and tmp/ empty. The seed is printed and taken from
/// STRATA_FUZZ_SEED when set, so that a failure is reproduced by running again with it; STRATA_FUZZ_ITERATIONS sets
/// how many imports a run makes.
/// </summary>
public sealed class ImageImportFuzzTests(ITestOutputHelper output) : ImageImportFixture
{
    /// <summary>Not a time limit: an import of these tiny images that has not finished in this long never will.</summary>
    static readonly TimeSpan HangDetector = TimeSpan.FromSeconds(60);

    static int Setting(string name, int fallback) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

    [Fact]
    public async Task RandomlyBrokenImagesFailCleanly()
    {
        int seed = Setting("STRATA_FUZZ_SEED", Random.Shared.Next());
        int iterations = Setting("STRATA_FUZZ_ITERATIONS", 3000);
        output.WriteLine($"fuzz seed {seed} ({iterations} imports); STRATA_FUZZ_SEED={seed} runs them again");
        var outcomes = new Dictionary<string, int>(StringComparer.Ordinal);
        var formats = Enum.GetValues<FuzzFormat>();
        for (int i = 0; i < iterations; i++)
        {
            // each import from a seed of its own: the n-th break of a run does not depend on what the others drew
            var random = new Random(unchecked(seed * 7919 + i));
            var mutator = new ImageMutator(random, formats[random.Next(formats.Length)]);
            string work = Temp.Dir($"fuzz-{i}");
            string outside = Temp.Dir($"fuzz-{i}-outside");
            string path = mutator.Write(Path.Combine(work, "image" + (random.Next(2) == 0 ? "" : ".tar")), outside);
            string where = $"seed {seed}, import {i} ({mutator.Describe()})";

            var layers = LayerIds();
            var blobs = BlobNames();
            var images = ImageIds();
            var import = Task.Run(() =>
            {
                try
                {
                    Import(path);
                    return (Exception?)null;
                }
                catch (Exception ex)
                {
                    return ex;
                }
            });
            Exception? error;
            try
            {
                error = await import.WaitAsync(HangDetector);
            }
            catch (TimeoutException)
            {
                Assert.Fail($"{where}: the import did not finish in {HangDetector.TotalSeconds} s");
                return;
            }
            Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(Root, "tmp")));
            if (error is null)
            {
                Assert.False(mutator.MustFail, $"{where}: imported an image whose files are not all regular files inside it");
                Count(outcomes, "imported");
            }
            else
            {
                if (error is not StrataException strata) throw new Xunit.Sdk.XunitException($"{where}: {error.GetType().Name} instead of a StrataException: {error}");
                Assert.False(strata.Message.Contains('\n') || strata.Message.Contains('\r'), $"{where}: the message is not one line: {strata.Message}");
                Assert.True(strata.Message.Length > 0, $"{where}: an empty message");
                Assert.True(images.SequenceEqual(ImageIds()), $"{where}: the images changed: {strata.Message}");
                Assert.True(layers.SequenceEqual(LayerIds()), $"{where}: the layers changed: {strata.Message}");
                Assert.True(blobs.SequenceEqual(BlobNames()), $"{where}: the blobs changed: {strata.Message}");
                Count(outcomes, strata.Kind.ToString());
            }
            Strata.Archive.FileTree.Remove(work); // never follows the links a break made
            Strata.Archive.FileTree.Remove(outside);
        }
        output.WriteLine(string.Join(", ", outcomes.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key} {o.Value}")));
        // the breaks reach past the first checks: some imports succeed, and failures come in several kinds
        if (iterations >= 500) Assert.True(outcomes.Count >= 4, $"seed {seed}: outcomes {string.Join(", ", outcomes.Keys)}");
    }

    static void Count(Dictionary<string, int> outcomes, string key) => outcomes[key] = outcomes.GetValueOrDefault(key) + 1;
}
