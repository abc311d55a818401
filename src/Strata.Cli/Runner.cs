using System.CommandLine;

namespace Strata.Cli;

/// <summary>Runs a parsed command and translates failures exactly once: one line `strata: message` on the
/// command's stderr and an exit code (see <see cref="ExitCodes"/>).</summary>
static class Runner
{
    public static int Run(ParseResult parsed)
    {
        var err = Io.Current.Err;
        if (Usage.Problem(parsed) is { } problem)
        {
            err.WriteLine($"strata: {problem}");
            return ExitCodes.Usage;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, Output = Io.Current.Out, Error = err });
        }
        catch (Commands.StepFailed ex)
        {
            if (ex.Message.Length > 0) err.WriteLine(ex.Message); // the step's own `strata: ...` line
            return ex.Code;
        }
        catch (StrataException ex)
        {
            err.WriteLine($"strata: {ex.Message}");
            return ExitCodes.For(ex.Kind);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            err.WriteLine($"strata: {StrataException.OneLine(ex.Message)}");
            return ExitCodes.Failure;
        }
        catch (Exception ex)
        {
            // a bug of ours: still one line, naming what failed, rather than a stack trace
            err.WriteLine($"strata: internal error ({ex.GetType().Name}: {StrataException.OneLine(ex.Message)}); please report it");
            return ExitCodes.Failure;
        }
    }
}
