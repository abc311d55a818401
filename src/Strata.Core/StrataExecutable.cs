namespace Strata.Core;

/// <summary>Where the strata executable comes from when Strata starts one of its own processes (the thin driver's
/// `strata pool serve`): $STRATA_BIN when set (tests, and hosts that embed the engine), else this process when it is
/// strata. Decided here and nowhere else.</summary>
public static class StrataExecutable
{
    public const string Variable = "STRATA_BIN";

    /// <summary>The executable's path; Unsupported, naming <paramref name="purpose"/>, when there is none to run.</summary>
    public static string Path(string purpose)
    {
        if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } bin) return bin;
        if (Environment.ProcessPath is { } self && System.IO.Path.GetFileName(self) == "strata") return self;
        throw StrataException.Unsupported($"{purpose}, and this process is not strata: set {Variable} to the strata executable");
    }
}
