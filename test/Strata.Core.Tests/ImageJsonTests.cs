using System.Text;
using System.Text.Json.Nodes;
using Strata.Core.Images;

namespace Strata.Core.Tests;

/// <summary>
/// Valid JSON that is not a valid image: nulls where values must be, wrong types, sizes out of range, media
/// types that lie about what a blob is, strings that would break a message's line. Each is one clear line
/// (Corrupt, or Unsupported for what is valid but not supported) and leaves nothing behind.
/// </summary>
public sealed class ImageJsonTests : ImageImportFixture
{
    // ---- docker-archive manifest.json ----

    public static TheoryData<string, string> DockerManifestEdits => new()
    {
        { "Config: null", "manifest.json: [0].Config is missing or null" },
        { "Layers: null", "manifest.json: [0].Layers is missing or null" },
        { "Layers: [.., null]", "manifest.json: [0].Layers[1] is null" },
        { "RepoTags: [null]", "manifest.json: [0].RepoTags[0] is null" },
        { "[null]", "manifest.json: [0] is null" },
        { "Config: 7", "manifest.json is not valid JSON ($[0].Config has the wrong type)" },
    };

    [Theory]
    [MemberData(nameof(DockerManifestEdits))]
    public void ADockerManifestWithNullsOrWrongTypesIsRefused(string edit, string fragment)
    {
        var docker = new DockerArchiveBuilder
        {
            EditManifest = m =>
            {
                var entry = m[0]!.AsObject();
                switch (edit)
                {
                    case "Config: null": entry["Config"] = null; break;
                    case "Layers: null": entry["Layers"] = null; break;
                    case "Layers: [.., null]": entry["Layers"]![1] = null; break;
                    case "RepoTags: [null]": entry["RepoTags"] = new JsonArray((JsonNode?)null); break;
                    case "[null]": m[0] = null; break;
                    case "Config: 7": entry["Config"] = 7; break;
                }
            },
        };
        docker.Add(TwoLayers(), "x:1");
        Fails(Input("image.tar", docker.Archive()), ErrorKind.Corrupt, fragment);
    }

    // ---- index.json ----

    public static TheoryData<string, string> IndexEdits => new()
    {
        { "manifests: null", "index.json: manifests is missing or null" },
        { "manifests: [null]", "index.json: manifests[0] is null" },
        { "digest: null", "index.json: manifests[0].digest is missing or null" },
        { "size: -1", "index.json: manifests[0].size is negative (-1)" },
        { "annotations: {k: null}", "index.json: manifests[0].annotations['org.opencontainers.image.ref.name'] is null" },
        { "platform: {architecture}", "index.json: manifests[0].platform.os is missing or null" },
        { "platform: {os: 1}", "index.json is not valid JSON ($.manifests[0].platform.os has the wrong type)" },
        { "schemaVersion: 3", "index.json has schema version 3" },
    };

    [Theory]
    [MemberData(nameof(IndexEdits))]
    public void AnIndexWithNullsOrValuesOutOfRangeIsRefused(string edit, string fragment)
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        var index = new JsonObject { ["schemaVersion"] = 2, ["mediaType"] = MediaTypes.OciIndex, ["manifests"] = new JsonArray(OciBuilder.Named(built.Descriptor, "1.0")) };
        var entry = index["manifests"]![0]!.AsObject();
        switch (edit)
        {
            case "manifests: null": index["manifests"] = null; break;
            case "manifests: [null]": index["manifests"]![0] = null; break;
            case "digest: null": entry["digest"] = null; break;
            case "size: -1": entry["size"] = -1; break;
            case "annotations: {k: null}": entry["annotations"]!["org.opencontainers.image.ref.name"] = null; break;
            case "platform: {architecture}": entry["platform"] = new JsonObject { ["architecture"] = Platform.Host.Architecture }; break;
            case "platform: {os: 1}": entry["platform"]!["os"] = 1; break;
            case "schemaVersion: 3": index["schemaVersion"] = 3; break;
        }
        oci.Files["index.json"] = Blob.Json(index);
        Fails(Layout(oci), edit == "schemaVersion: 3" ? ErrorKind.Unsupported : ErrorKind.Corrupt, fragment);
    }

    // ---- manifests ----

    public static TheoryData<string, string> ManifestEdits => new()
    {
        { "config: null", ": config is missing or null" },
        { "layers: null", ": layers is missing or null" },
        { "layers: [.., null]", ": layers[1] is null" },
        { "layers[1].size: -1", ": layers[1].size is negative (-1)" },
        { "layers[1].digest: 1", "is not valid JSON ($.layers[1].digest has the wrong type)" },
        { "config.size: 100 MiB", "is 104857600 bytes by its descriptor, more than a JSON document of an image may be" },
        { "layers.size: max", "not 9223372036854775807 as its descriptor says" },
        { "layers[1].mediaType: two lines", "has unknown media type 'application/x\\ny'" },
    };

    [Theory]
    [MemberData(nameof(ManifestEdits))]
    public void AManifestWithNullsOrValuesOutOfRangeIsRefused(string edit, string fragment)
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers(editManifest: m =>
        {
            switch (edit)
            {
                case "config: null": m["config"] = null; break;
                case "layers: null": m["layers"] = null; break;
                case "layers: [.., null]": m["layers"]![1] = null; break;
                case "layers[1].size: -1": m["layers"]![1]!["size"] = -1; break;
                case "layers[1].digest: 1": m["layers"]![1]!["digest"] = 1; break;
                case "config.size: 100 MiB": m["config"]!["size"] = 100 << 20; break;
                case "layers.size: max": foreach (var l in m["layers"]!.AsArray()) l!["size"] = long.MaxValue; break;
                case "layers[1].mediaType: two lines": m["layers"]![1]!["mediaType"] = "application/x\ny"; break;
            }
        }));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), edit.Contains("mediaType") ? ErrorKind.Unsupported : ErrorKind.Corrupt, fragment);
    }

    public static TheoryData<string, ErrorKind, string> LyingTypesAndSizes => new()
    {
        { "index.json mediaType", ErrorKind.Unsupported, $"index.json has media type '{MediaTypes.OciManifest}', not an index's" },
        { "entry mediaType", ErrorKind.Unsupported, "has media type 'text/plain' in the index that names it, not a manifest's" },
        { "config mediaType", ErrorKind.Unsupported, $"config has media type '{MediaTypes.OciLayer}', not an image config's" },
        { "config os", ErrorKind.Corrupt, ": os is missing or null" },
        { "config architecture", ErrorKind.Corrupt, ": architecture is missing or null" },
        { "rootfs type", ErrorKind.Unsupported, ": rootfs.type is 'squashfs', not 'layers'" },
        { "long media type", ErrorKind.Unsupported, $"has unknown media type '{new string('x', 80)}...'" },
    };

    [Theory]
    [MemberData(nameof(LyingTypesAndSizes))]
    public void AMediaTypeOrFieldThatIsNotAnImagesIsRefused(string edit, ErrorKind kind, string fragment)
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers(
            editConfig: c =>
            {
                if (edit == "config os") c.Remove("os");
                if (edit == "config architecture") c["architecture"] = null;
                if (edit == "rootfs type") c["rootfs"]!["type"] = "squashfs";
            },
            editManifest: m =>
            {
                if (edit == "config mediaType") m["config"]!["mediaType"] = MediaTypes.OciLayer;
                if (edit == "long media type") m["layers"]![1]!["mediaType"] = new string('x', 10_000);
            }));
        var entry = (JsonObject)built.Descriptor.DeepClone();
        if (edit == "entry mediaType") entry["mediaType"] = "text/plain";
        oci.Top(entry);
        if (edit == "index.json mediaType")
        {
            var index = JsonNode.Parse(oci.Files["index.json"])!;
            index["mediaType"] = MediaTypes.OciManifest;
            oci.Files["index.json"] = Blob.Json(index);
        }
        Fails(Layout(oci), kind, fragment);
    }

    [Fact]
    public void ABlobTheStoreHasIsRefusedUnderADescriptorOfAnotherSize()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        oci.Top(built.Descriptor);
        Import(Layout(oci));

        // the same layer blobs, now under descriptors that say other sizes: the stored copies must not make them right
        foreach (long size in new[] { 0L, 1L, long.MaxValue })
        {
            var lying = new OciBuilder();
            var again = lying.Add(TwoLayers(editManifest: m => m["layers"]![1]!["size"] = size));
            lying.Top(again.Descriptor);
            Fails(Layout(lying), ErrorKind.Corrupt, $"layer {built.LayerDigests[1]} has {oci.Read(built.LayerDigests[1]).Length} bytes, not {size} as its descriptor says");
        }
    }

    [Fact]
    public void AnIndexEntryThatSaysIndexButNamesAManifestIsRefused()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        var entry = (JsonObject)built.Descriptor.DeepClone();
        entry["mediaType"] = MediaTypes.DockerManifestList;
        oci.Top(entry);
        Fails(Layout(oci), ErrorKind.Corrupt, $"index {built.ManifestDigest} is an image manifest, not the index its descriptor says ({MediaTypes.DockerManifestList})");
    }

    [Fact]
    public void AnIndexEntryThatSaysManifestButNamesAnIndexIsRefused()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        var index = oci.Index(built.Descriptor);
        var entry = (JsonObject)index.DeepClone();
        entry["mediaType"] = MediaTypes.OciManifest;
        oci.Top(entry);
        Fails(Layout(oci), ErrorKind.Corrupt, $"manifest {index["digest"]} is an image index, not the manifest its descriptor says ({MediaTypes.OciManifest})");
    }

    [Fact]
    public void ADigestOverTwoLinesIsReportedOnOne()
    {
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers());
        var entry = (JsonObject)built.Descriptor.DeepClone();
        entry["digest"] = "sha256:ab\ncd";
        oci.Top(entry);
        Fails(Layout(oci), ErrorKind.Corrupt, "invalid manifest digest 'sha256:ab\\ncd'");
    }

    // ---- configs ----

    public static TheoryData<string, string> ConfigEdits => new()
    {
        { "Env: [null]", ": config.Env[0] is null" },
        { "Cmd: [null]", ": config.Cmd[0] is null" },
        { "Entrypoint: [.., null]", ": config.Entrypoint[1] is null" },
        { "Labels: {a: null}", ": config.Labels['a'] is null" },
        { "history: [null]", ": history[0] is null" },
        { "history: [{created_by: 1}]", "is not valid JSON ($.history[0].created_by has the wrong type)" },
        { "diff_ids: [null, ..]", ": rootfs.diff_ids[0] is null" },
        { "diff_ids: null", "lists 0 layer diff id(s) for 2 layer(s)" },
        { "rootfs: null", "lists 0 layer diff id(s) for 2 layer(s)" },
        { "User: 0", "is not valid JSON ($.config.User has the wrong type)" },
    };

    [Theory]
    [MemberData(nameof(ConfigEdits))]
    public void AConfigWithNullsOrWrongTypesIsRefused(string edit, string fragment)
    {
        void Edit(JsonObject c)
        {
            var process = c["config"]!.AsObject();
            switch (edit)
            {
                case "Env: [null]": process["Env"] = new JsonArray((JsonNode?)null); break;
                case "Cmd: [null]": process["Cmd"] = new JsonArray((JsonNode?)null); break;
                case "Entrypoint: [.., null]": process["Entrypoint"] = new JsonArray("/bin/sh", null); break;
                case "Labels: {a: null}": process["Labels"] = new JsonObject { ["a"] = null }; break;
                case "history: [null]": c["history"] = new JsonArray((JsonNode?)null); break;
                case "history: [{created_by: 1}]": c["history"] = new JsonArray(new JsonObject { ["created_by"] = 1 }); break;
                case "diff_ids: [null, ..]": c["rootfs"]!["diff_ids"]![0] = null; break;
                case "diff_ids: null": c["rootfs"]!["diff_ids"] = null; break;
                case "rootfs: null": c["rootfs"] = null; break;
                case "User: 0": process["User"] = 0; break;
            }
        }
        var oci = new OciBuilder();
        var built = oci.Add(TwoLayers(editConfig: Edit));
        oci.Top(built.Descriptor);
        Fails(Layout(oci), ErrorKind.Corrupt, fragment);

        // a docker-archive's config goes through the same checks
        var docker = new DockerArchiveBuilder();
        docker.Add(TwoLayers(editConfig: Edit), "x:1");
        Fails(Input("image.tar", docker.Archive()), ErrorKind.Corrupt, fragment);
    }

    [Fact]
    public void ValidJsonOfTheWrongShapeIsRefusedAtEveryLevel()
    {
        foreach (var json in new[] { "null", "[]", "7", "\"x\"", "{\"manifests\":{}}" })
        {
            var oci = new OciBuilder();
            oci.Add(TwoLayers());
            oci.Files["index.json"] = Encoding.UTF8.GetBytes(json);
            Fails(Layout(oci), ErrorKind.Corrupt, "index.json is not valid JSON");
        }
    }
}
