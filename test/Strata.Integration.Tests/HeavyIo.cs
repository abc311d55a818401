namespace Strata.Integration.Tests;

/// <summary>Tests that write hundreds of MiB to the shared /tmp filesystem (pool writers killed mid-write, NBD
/// copies) run alone, after the parallel ones: their dirty data would otherwise make every other test's syncfs
/// wait on it, and a daemon killed mid-syncfs stays unkillable (and holding its store) until that completes.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class HeavyIo
{
    public const string Name = "heavy IO on /tmp";
}
