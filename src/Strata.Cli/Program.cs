using Strata.Cli;

args = Commands.PrepareArgs(args);
var parsed = Commands.Build().Parse(args);
if (Completion.Handles(parsed)) return Completion.Run(parsed); // it reads the store's files here, never through a daemon
var route = Commands.Route(parsed);
// a daemon that owns this store runs the command; otherwise this process opens the store itself
if (route.Forwardable)
{
    try
    {
        if (File.Exists(route.Socket))
        {
            var sent = Commands.AskBeforeForwarding(parsed, args);
            if (sent != args) parsed = Commands.Build().Parse(args = sent); // answered here: not asked again should it run here after all
        }
        if (Control.TryForward(route, args) is { } code) return code;
    }
    catch (Strata.StrataException ex)
    {
        Console.Error.WriteLine($"strata: {ex.Message}");
        return ExitCodes.For(ex.Kind);
    }
    catch (Exception ex) when (ex is HttpRequestException or IOException)
    {
        Console.Error.WriteLine(Strata.StrataException.OneLine($"strata: lost the connection to the daemon at {route.Socket} ({ex.Message})"));
        return ExitCodes.Failure;
    }
}
return Runner.Run(parsed);
