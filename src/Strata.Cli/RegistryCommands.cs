using System.CommandLine;
using System.Globalization;
using System.Text;
using Strata.Core;
using Strata.Core.Images;
using Strata.Core.Registry;

namespace Strata.Cli;

/// <summary>`strata pull`, `push`, `login` and `logout`, as docker's: thin wrappers over <see cref="Puller"/>,
/// <see cref="Pusher"/>, <see cref="Login"/> and <see cref="DockerCredentials"/>. Unlike docker, pull and push write
/// their progress and status lines to stderr (<see cref="TransferDisplay"/>) and only their result to stdout, so that
/// a script can capture it. login and logout touch no store: they run in this process, never in a daemon.</summary>
public static partial class Commands
{
    static IEnumerable<Command> RegistryCommands()
    {
        yield return PullCommand();
        yield return PushCommand();
        yield return LoginCommand();
        yield return LogoutCommand();
    }

    /// <summary>Commands that run in the CLI process even when a daemon owns the store (see <see cref="Route"/>).</summary>
    static bool IsClientCommand(string name) => name is "login" or "logout";

    static Command PullCommand()
    {
        var reference = new Argument<string>("REF") { Description = "Image reference: NAME[:TAG|@DIGEST] (debian:12, registry.example:5000/team/app:1)" };
        var platform = new Option<string?>("--platform") { Description = "os/arch[/variant] to pick from a multi-platform image (default: this host's)" };
        var allTags = new Option<bool>("--all-tags", "-a") { Description = "Pull every tagged image of the repository" };
        var downloads = new Option<int?>("--max-concurrent-downloads") { Description = "Layers downloaded at once (default: the config file's max-concurrent-downloads, else 3)" };
        var cmd = new Command("pull", "Pull an image from a registry (like docker pull); progress and docker's status lines go to stderr, "
            + "the full reference of what was pulled to stdout") { reference, platform, allTags, downloads, QuietOption };
        cmd.SetAction(r =>
        {
            string text = r.GetValue(reference)!;
            var target = ImageReference.Parse(text);
            bool all = r.GetValue(allTags), tagged = NamesTag(text);
            if (all && (tagged || target.Digest is not null)) throw StrataException.Invalid("a tag or digest can't be used with --all-tags/-a");
            if (all) target = target with { Tag = null };
            if (r.GetValue(downloads) is { } n && n is < 1 or > 100) throw StrataException.Invalid($"--max-concurrent-downloads {n} is out of range (1 to 100)");
            var display = Display(r);
            var options = new PullOptions
            {
                Platform = r.GetValue(platform) is { } p ? Platform.Parse(p) : null,
                AllTags = all,
                MaxConcurrentDownloads = r.GetValue(downloads),
                Progress = display is null ? null : display.Progress,
                Message = display is null ? null : display.Message,
            };
            if (!all && !tagged && target.Digest is null) display?.Message("Using default tag: latest");
            using var lease = OpenStore(r);
            var pulled = new Puller(Catalog(lease).Images, RegistrySettings.Load(), new DockerCredentials()).Pull(target, options);
            if (!all) Io.Current.Out.WriteLine(target.ToString());
            else foreach (var image in pulled) Io.Current.Out.WriteLine(ImageReference.Parse(image.Name).ToString());
            return 0;
        });
        return cmd;
    }

    /// <summary>Whether a reference as typed names a tag (ImageReference reads no tag as latest).</summary>
    static bool NamesTag(string text)
    {
        string name = text.Split('@')[0];
        return name.LastIndexOf(':') > name.LastIndexOf('/');
    }

    static Command PushCommand()
    {
        var image = new Argument<string>("IMAGE") { Description = "Image name, id or id prefix in the store" };
        var reference = new Argument<string?>("REF") { Description = "Where to push it: NAME[:TAG] (default: IMAGE, when it is a name)", Arity = ArgumentArity.ZeroOrOne };
        var compression = new Option<string?>("--compression") { Description = "Recompress layers as gzip or zstd before the upload (default: as stored)" };
        var chunkSize = new Option<string?>("--chunk-size") { Description = "Upload blobs in chunks of SIZE (64M, 5MiB; default: each blob in one request)" };
        var cmd = new Command("push", "Push an image to a registry (like docker push); progress goes to stderr, "
            + "\"TAG: digest: sha256:... size: N\" (with -q the full reference) to stdout") { image, reference, compression, chunkSize, QuietOption };
        cmd.SetAction(r =>
        {
            var options = new PushOptions
            {
                Compression = r.GetValue(compression) is { } c ? Compression(c) : null,
                ChunkSize = r.GetValue(chunkSize) is { } s ? ByteSize.ParseWithUnit(s, "--chunk-size") : 0,
            };
            string source = r.GetValue(image)!;
            var given = r.GetValue(reference) is { } t ? PushTarget(t) : null;
            using var lease = OpenStore(r);
            var images = Catalog(lease).Images;
            if (given is null && images.TryGet(source, out var found) && ImageName.TryNormalize(source) is var name && (name is null || !found!.Names.Contains(name)))
                throw StrataException.Invalid($"'{source}' is an image id: name where to push it (strata push IMAGE REF)");
            var target = given ?? PushTarget(source);
            var display = Display(r);
            options = options with { Progress = display is null ? null : display.Progress, Message = display is null ? null : display.Message };
            var pushed = new Pusher(images, RegistrySettings.Load(), new DockerCredentials()).Push(source, target, options);
            Io.Current.Out.WriteLine(r.GetValue(QuietOption) ? target.ToString() : $"{pushed.Tag}: digest: {pushed.ManifestDigest} size: {pushed.Size.ToString(CultureInfo.InvariantCulture)}");
            return 0;
        });
        return cmd;
    }

    static ImageReference PushTarget(string text)
    {
        var target = ImageReference.Parse(text);
        if (target.Digest is not null) throw StrataException.Invalid($"cannot push to a digest reference '{text}': give a tag");
        return target;
    }

    static LayerCompression Compression(string text) => text switch
    {
        "gzip" => LayerCompression.Gzip,
        "zstd" => LayerCompression.Zstd,
        _ => throw StrataException.Invalid($"unknown --compression '{text}' (use gzip or zstd)"),
    };

    /// <summary>The progress display on stderr; null with -q.</summary>
    static TransferDisplay? Display(ParseResult r) =>
        r.GetValue(QuietOption) ? null : new TransferDisplay(Io.Current.Err, Io.Current.ErrIsTerminal, Io.Current.Width ?? ConsoleWidth());

    static int ConsoleWidth()
    {
        try
        {
            return Console.WindowWidth is > 0 and var w ? w : 80;
        }
        catch (IOException)
        {
            return 80;
        }
    }

    const string InsecurePasswordWarning = "WARNING! Using --password via the CLI is insecure. Use --password-stdin.";
    const int MaxPasswordBytes = 64 * 1024;

    static Command LoginCommand()
    {
        var server = new Argument<string?>("SERVER") { Description = $"Registry host[:port] (default {ImageReference.DefaultRegistry})", Arity = ArgumentArity.ZeroOrOne };
        var username = new Option<string?>("--username", "-u") { Description = "Username" };
        var password = new Option<string?>("--password", "-p") { Description = "Password (insecure: it shows in the process list; use --password-stdin)" };
        var passwordStdin = new Option<bool>("--password-stdin") { Description = "Read the password from stdin (one trailing newline is dropped)" };
        var cmd = new Command("login", "Log in to a registry (like docker login): checks the login with the registry, then keeps it in "
            + "Docker's config.json (or its credential helper), where docker and strata both find it") { server, username, password, passwordStdin };
        cmd.SetAction(r =>
        {
            string registry = RegistryHost(r.GetValue(server) ?? ImageReference.DefaultRegistry);
            string? user = r.GetValue(username) is { Length: > 0 } u ? u : null;
            string? secret = r.GetValue(password) is { Length: > 0 } p ? p : null;
            if (secret is not null)
            {
                if (r.GetValue(passwordStdin)) throw StrataException.Invalid("--password and --password-stdin are mutually exclusive");
                Io.Current.Err.WriteLine(InsecurePasswordWarning);
            }
            if (r.GetValue(passwordStdin))
            {
                if (user is null) throw StrataException.Invalid("--password-stdin needs --username (-u)");
                secret = ReadPasswordStdin();
            }
            if (user is null || secret is null)
            {
                if (Console.IsInputRedirected) throw StrataException.Invalid("cannot ask for a username and password: stdin is not a terminal (use -u and --password-stdin)");
                user ??= Prompt("Username: ");
                if (user.Length == 0) throw StrataException.Invalid("a username is required");
                secret ??= PromptSecret("Password: ");
                if (secret.Length == 0) throw StrataException.Invalid("a password is required");
            }
            var credential = new RegistryCredential(user, secret);
            string? token = Login.Check(registry, credential, RegistrySettings.Load());
            var credentials = new DockerCredentials();
            if (credentials.Where(registry) == credentials.ConfigFile)
                Io.Current.Err.WriteLine($"WARNING! Your password will be stored unencrypted in {credentials.ConfigFile}. Configure a credential helper (credsStore) to remove this warning.");
            credentials.Store(registry, token is null ? credential : credential with { Password = null, IdentityToken = token });
            Io.Current.Out.WriteLine("Login Succeeded");
            return 0;
        });
        return cmd;
    }

    static Command LogoutCommand()
    {
        var server = new Argument<string?>("SERVER") { Description = $"Registry host[:port] (default {ImageReference.DefaultRegistry})", Arity = ArgumentArity.ZeroOrOne };
        var cmd = new Command("logout", "Forget the login to a registry (like docker logout)") { server };
        cmd.SetAction(r =>
        {
            string registry = RegistryHost(r.GetValue(server) ?? ImageReference.DefaultRegistry);
            Io.Current.Out.WriteLine(new DockerCredentials().Erase(registry) ? $"Removing login credentials for {registry}" : $"Not logged in to {registry}");
            return 0;
        });
        return cmd;
    }

    /// <summary>A SERVER argument as docker takes it (host[:port], or a URL of which the host counts:
    /// https://registry.example:5000/v2/), with Docker Hub's names (index.docker.io, registry-1.docker.io, its
    /// https://index.docker.io/v1/ key) all docker.io.</summary>
    static string RegistryHost(string server)
    {
        string host = server;
        foreach (var scheme in new[] { "https://", "http://" })
            if (host.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)) host = host[scheme.Length..];
        if (host.IndexOf('/') is var slash and >= 0) host = host[..slash];
        if (host is ImageReference.DefaultRegistry or "index.docker.io" or ImageReference.DefaultRegistryHost) return ImageReference.DefaultRegistry;
        string name = host, port = "";
        int colon = host.LastIndexOf(':');
        if (colon > host.LastIndexOf(']')) (name, port) = (host[..colon], host[(colon + 1)..]);
        bool valid = Uri.CheckHostName(name.Trim('[', ']')) != UriHostNameType.Unknown && (name.StartsWith('[') == name.EndsWith(']'))
            && (port.Length == 0 || (port.Length <= 5 && port.All(char.IsAsciiDigit) && int.Parse(port, CultureInfo.InvariantCulture) is >= 1 and <= 65535));
        return valid ? host : throw StrataException.Invalid($"'{server}' is not a registry (host[:port])");
    }

    static string ReadPasswordStdin()
    {
        using var input = Io.Current.In();
        var buffer = new byte[MaxPasswordBytes + 1];
        int n = 0, read;
        while (n < buffer.Length && (read = input.Read(buffer, n, buffer.Length - n)) > 0) n += read;
        if (n > MaxPasswordBytes) throw StrataException.Invalid($"--password-stdin: the password is longer than {MaxPasswordBytes / 1024} KiB");
        string secret = Encoding.UTF8.GetString(buffer, 0, n);
        if (secret.EndsWith('\n')) secret = secret[..^1];
        if (secret.EndsWith('\r')) secret = secret[..^1];
        return secret.Length > 0 ? secret : throw StrataException.Invalid("--password-stdin read an empty password");
    }

    static string Prompt(string prompt)
    {
        Io.Current.Err.Write(prompt);
        Io.Current.Err.Flush();
        return (Console.ReadLine() ?? "").Trim();
    }

    /// <summary>Reads a line from the terminal without echoing it.</summary>
    static string PromptSecret(string prompt)
    {
        Io.Current.Err.Write(prompt);
        Io.Current.Err.Flush();
        var secret = new StringBuilder();
        while (true)
        {
            var key = Console.ReadKey(intercept: true);
            if (key.Key == ConsoleKey.Enter || (key.KeyChar == '\u0004' && secret.Length == 0)) break;
            if (key.Key == ConsoleKey.Backspace)
            {
                if (secret.Length > 0) secret.Length--;
            }
            else if (!char.IsControl(key.KeyChar)) secret.Append(key.KeyChar);
        }
        Io.Current.Err.WriteLine();
        return secret.ToString();
    }
}
