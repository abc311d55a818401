using System.CommandLine;
using Strata;
using Strata.Cli;

var root = Commands.Build();
var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    Console.Error.WriteLine($"strata: {parsed.Errors[0].Message} (see 'strata --help')");
    return ExitCodes.Usage;
}
try
{
    return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (StrataException ex)
{
    Console.Error.WriteLine($"strata: {ex.Message}");
    return ExitCodes.For(ex.Kind);
}
catch (IOException ex)
{
    Console.Error.WriteLine($"strata: {ex.Message}");
    return ExitCodes.Failure;
}
catch (UnauthorizedAccessException ex)
{
    Console.Error.WriteLine($"strata: {ex.Message}");
    return ExitCodes.Failure;
}
