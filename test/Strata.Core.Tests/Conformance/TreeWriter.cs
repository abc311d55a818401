using System.Text;
using Strata.Native;

namespace Strata.Core.Tests.Conformance;

/// <summary>Small helpers to build layer contents with exact attributes (as root).</summary>
static class TreeWriter
{
    public static void File(string root, string rel, string content, uint mode = 0x1A4 /* 0644 */, uint uid = 0, uint gid = 0)
    {
        string path = Path.Combine(root, rel);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        System.IO.File.WriteAllText(path, content);
        Posix.LchownAt(FileDescriptor.Cwd, path, uid, gid);
        Posix.ChmodAt(FileDescriptor.Cwd, path, mode);
    }

    public static void Dir(string root, string rel, uint mode = 0x1ED /* 0755 */, uint uid = 0, uint gid = 0)
    {
        string path = Path.Combine(root, rel);
        Directory.CreateDirectory(path);
        Posix.LchownAt(FileDescriptor.Cwd, path, uid, gid);
        Posix.ChmodAt(FileDescriptor.Cwd, path, mode);
    }

    public static void Xattr(string root, string rel, string name, string value) =>
        Posix.LsetXattr(Path.Combine(root, rel), name, Encoding.UTF8.GetBytes(value));

    public static string Read(string root, string rel) => System.IO.File.ReadAllText(Path.Combine(root, rel));

    public static bool Exists(string root, string rel) => Posix.TryLstat(Path.Combine(root, rel), out _);
}
