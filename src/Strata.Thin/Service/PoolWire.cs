using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Strata.Thin.Service;

// The wire codec of a pool's control socket: the typed calls and replies of IPoolService and how they are framed.
// Operation names exist here and nowhere else.

/// <summary>One call of <see cref="IPoolService"/> on the wire; <c>Op</c> names its kind. Fields are checked by type and
/// nullability when parsed (a missing name or a string size is malformed); ranges and names are the pool's to check.</summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "Op")]
[JsonDerivedType(typeof(CreateCall), "create")]
[JsonDerivedType(typeof(SnapshotCall), "snapshot")]
[JsonDerivedType(typeof(DeleteCall), "delete")]
[JsonDerivedType(typeof(ResizeCall), "resize")]
[JsonDerivedType(typeof(RollbackCall), "rollback")]
[JsonDerivedType(typeof(DeviceCall), "device")]
[JsonDerivedType(typeof(DeviceNamesCall), "names")]
[JsonDerivedType(typeof(DevicesCall), "devices")]
[JsonDerivedType(typeof(StatusCall), "status")]
[JsonDerivedType(typeof(SuperblockProblemsCall), "problems")]
[JsonDerivedType(typeof(AttachCall), "attach")]
[JsonDerivedType(typeof(DetachCall), "detach")]
[JsonDerivedType(typeof(AttachedCall), "attached")]
[JsonDerivedType(typeof(ReadCall), "read")]
[JsonDerivedType(typeof(WriteCall), "write")]
[JsonDerivedType(typeof(CheckCall), "check")]
[JsonDerivedType(typeof(DumpCall), "dump")]
[JsonDerivedType(typeof(DisksCall), "disks")]
[JsonDerivedType(typeof(ScrubCall), "scrub")]
[JsonDerivedType(typeof(StatsCall), "stats")]
public abstract record PoolCall;

/// <summary>A call whose reply carries a <typeparamref name="TResult"/>.</summary>
public abstract record PoolCall<TResult> : PoolCall;

public sealed record CreateCall(string Name, long Size, string? Owner = null) : PoolCall<ThinDeviceInfo>;
public sealed record SnapshotCall(string Source, string Name, string? Owner = null) : PoolCall<ThinDeviceInfo>;
public sealed record DeleteCall(string Name, bool Defer = false, string? Owner = null, bool Force = false) : PoolCall<bool>;
public sealed record ResizeCall(string Name, long Size) : PoolCall<ThinDeviceInfo>;
public sealed record RollbackCall(string Name, string Snapshot, string? Owner = null, bool Force = false) : PoolCall<ThinDeviceInfo>;
public sealed record DeviceCall(string Name) : PoolCall<ThinDeviceInfo>;
public sealed record DeviceNamesCall : PoolCall<List<string>>;
public sealed record DevicesCall : PoolCall<List<ThinDeviceInfo>>;
public sealed record StatusCall : PoolCall<PoolInfo>;
public sealed record SuperblockProblemsCall : PoolCall<List<string>>;
public sealed record AttachCall(string Name) : PoolCall<string>;
public sealed record DetachCall(string Name) : PoolCall<Done>;
public sealed record AttachedCall(string Name) : PoolCall<string?>;
/// <summary>Its reply's data frames carry the bytes.</summary>
public sealed record ReadCall(string Name, long Offset, long Length) : PoolCall<Done>;
/// <summary>The bytes to write follow the call in the request body.</summary>
public sealed record WriteCall(string Name, long Offset) : PoolCall<long>;
public sealed record CheckCall : PoolCall<PoolCheck>;
/// <summary>Its reply's data frames carry the XML.</summary>
public sealed record DumpCall : PoolCall<Done>;
public sealed record DisksCall(DiskChange Change) : PoolCall<Space.SpaceInfo>;
public sealed record ScrubCall(bool Repair) : PoolCall<Space.ScrubReport>;
/// <summary>Names: null for every device. Equal to another with the same names in the same order.</summary>
public sealed record StatsCall(List<string>? Names) : PoolCall<PoolStats>
{
    public bool Equals(StatsCall? other) => other is not null && (Names ?? []).SequenceEqual(other.Names ?? []) && (Names is null) == (other.Names is null);

    public override int GetHashCode() => Names?.Count ?? -1;
}

/// <summary>The reply of a call that returns nothing but success.</summary>
public sealed record Done
{
    public static readonly Done Value = new();
}

/// <summary>A failed call: the server's <see cref="StrataException"/>, kind and one-line message.</summary>
public sealed record PoolError(ErrorKind Kind, string Message);

[JsonSourceGenerationOptions(UseStringEnumConverter = true, RespectNullableAnnotations = true, RespectRequiredConstructorParameters = true,
    AllowOutOfOrderMetadataProperties = true)]
[JsonSerializable(typeof(PoolCall))]
[JsonSerializable(typeof(PoolError))]
[JsonSerializable(typeof(ThinDeviceInfo))]
[JsonSerializable(typeof(List<ThinDeviceInfo>))]
[JsonSerializable(typeof(List<string>))]
[JsonSerializable(typeof(PoolInfo))]
[JsonSerializable(typeof(PoolCheck))]
[JsonSerializable(typeof(Space.SpaceInfo))]
[JsonSerializable(typeof(Space.ScrubReport))]
[JsonSerializable(typeof(PoolStats))]
[JsonSerializable(typeof(Done))]
[JsonSerializable(typeof(bool))]
[JsonSerializable(typeof(long))]
[JsonSerializable(typeof(string))]
public sealed partial class PoolServiceJson : JsonSerializerContext;

/// <summary>
/// How a call and its reply travel on a pool's control socket, POOL/<see cref="SocketName"/> (HTTP/1.1 on a unix
/// socket, 0600): one POST to <see cref="Endpoint"/> per call.
/// <code>
/// request body   u32 N (big-endian, 1 to 1 MiB) | N bytes: the call as JSON (a PoolCall, "Op" names it) | write only:
///                the bytes to write, to the end of the body
/// response body  (always status 200) frames, each u8 type | u32 length (big-endian) | payload:
///                  1 data   bytes of a read or a dump (at most 1 MiB per frame), any number, first
///                  2 value  the call's result as JSON (the TResult of its PoolCall&lt;TResult&gt;), last
///                  3 error  a PoolError as JSON, last (also after data: a read that failed midway)
/// </code>
/// A request that is not a call (no length, a length past the limit, a body cut short, broken JSON, an unknown Op, a
/// field of the wrong type or null where a value is needed) is answered with an error frame: InvalidArgument,
/// "malformed request: ...".
/// </summary>
public static class PoolWire
{
    public const string SocketName = "strata.sock";
    /// <summary>v2: the typed calls and framed replies described here. v1 (a JSON request with an Op string and a JSON
    /// reply) was spoken before; a server or client of that version answers or is answered 404, which the client turns
    /// into one line saying so (<see cref="RemotePool"/>).</summary>
    public const string Endpoint = "/v2/pool";
    /// <summary>Largest call taken: calls are a few hundred bytes; a client must not make the server hold more.</summary>
    public const int MaxCallBytes = 1 << 20;
    /// <summary>Largest data frame written.</summary>
    public const int MaxDataFrame = 1 << 20;
    /// <summary>Largest value or error frame read: a device list of a large pool, far from this.</summary>
    public const int MaxReplyBytes = 256 << 20;

    const byte DataFrame = 1, ValueFrame = 2, ErrorFrame = 3;

    /// <summary>The name a call goes by on the wire (for messages about it).</summary>
    public static string NameOf(PoolCall call) =>
        PoolServiceJson.Default.PoolCall.PolymorphismOptions!.DerivedTypes.First(d => d.DerivedType == call.GetType()).TypeDiscriminator as string
        ?? throw new ArgumentOutOfRangeException(nameof(call));

    /// <summary>The head of a request body: the call's length and JSON.</summary>
    public static byte[] EncodeCall(PoolCall call)
    {
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(call, PoolServiceJson.Default.PoolCall);
        var head = new byte[4 + json.Length];
        BinaryPrimitives.WriteUInt32BigEndian(head, (uint)json.Length);
        json.CopyTo(head, 4);
        return head;
    }

    /// <summary>Reads the call at the start of a request body, leaving <paramref name="body"/> at what follows it.</summary>
    public static PoolCall ReadCall(Stream body)
    {
        Span<byte> prefix = stackalloc byte[4];
        if (!ReadFull(body, prefix)) throw Malformed("the body holds no call");
        uint length = BinaryPrimitives.ReadUInt32BigEndian(prefix);
        if (length == 0) throw Malformed("the call is empty");
        if (length > MaxCallBytes) throw Malformed("the call is larger than 1 MiB");
        var json = ArrayPool<byte>.Shared.Rent((int)length);
        try
        {
            if (!ReadFull(body, json.AsSpan(0, (int)length))) throw Malformed("the body ends inside the call");
            return JsonSerializer.Deserialize(json.AsSpan(0, (int)length), PoolServiceJson.Default.PoolCall) ?? throw Malformed("the call is null");
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException)
        {
            // NotSupportedException: an object with no Op (the abstract PoolCall itself)
            throw Malformed(ex.Message);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(json);
        }
    }

    /// <summary>The one error for a request that is not a call: InvalidArgument, "malformed request: ...".</summary>
    public static StrataException Malformed(string what) => StrataException.Invalid("malformed request: " + what);

    /// <summary>Writes a call's result: the last frame of a reply. The type follows the call's, so a reply cannot
    /// carry what its call does not return.</summary>
    public static void WriteValue<T>(Stream body, PoolCall<T> call, T value)
    {
        _ = call;
        WriteFrame(body, ValueFrame, JsonSerializer.SerializeToUtf8Bytes(value, TypeOf<T>()));
    }

    /// <summary>Writes a failure: the last frame of a reply.</summary>
    public static void WriteError(Stream body, StrataException error) =>
        WriteFrame(body, ErrorFrame, JsonSerializer.SerializeToUtf8Bytes(new PoolError(error.Kind, error.Message), PoolServiceJson.Default.PoolError));

    /// <summary>A write-only stream that sends what is written to it as data frames of a reply.</summary>
    public static Stream DataWriter(Stream body) => new DataFrames(body);

    /// <summary>Reads a reply: data frames go to <paramref name="data"/>, then its value is returned or its error thrown
    /// (the server's kind and message). A reply that breaks the framing throws <see cref="JsonException"/> or
    /// <see cref="InvalidDataException"/>; one cut short, <see cref="EndOfStreamException"/>.</summary>
    public static T ReadReply<T>(Stream body, PoolCall<T> call, Stream? data)
    {
        _ = call;
        Span<byte> header = stackalloc byte[5];
        byte[]? buffer = null;
        try
        {
            while (true)
            {
                if (!ReadFull(body, header)) throw new EndOfStreamException("the reply ends before its result");
                uint length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
                switch (header[0])
                {
                    case DataFrame when data is not null && length <= MaxDataFrame:
                        buffer ??= ArrayPool<byte>.Shared.Rent(MaxDataFrame);
                        if (!ReadFull(body, buffer.AsSpan(0, (int)length))) throw new EndOfStreamException("the reply ends inside a data frame");
                        data.Write(buffer, 0, (int)length);
                        break;
                    case ValueFrame when length <= MaxReplyBytes:
                        return JsonSerializer.Deserialize(ReadPayload(body, length), TypeOf<T>())!;
                    case ErrorFrame when length <= MaxReplyBytes:
                        var error = JsonSerializer.Deserialize(ReadPayload(body, length), PoolServiceJson.Default.PoolError)
                            ?? throw new InvalidDataException("the error frame is null");
                        throw new StrataException(Enum.IsDefined(error.Kind) ? error.Kind : ErrorKind.Io, error.Message);
                    default:
                        throw new InvalidDataException($"unexpected frame {header[0]} of {length} bytes");
                }
            }
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    static JsonTypeInfo<T> TypeOf<T>() => (JsonTypeInfo<T>)PoolServiceJson.Default.GetTypeInfo(typeof(T))!;

    static byte[] ReadPayload(Stream body, uint length)
    {
        var payload = new byte[length];
        if (!ReadFull(body, payload)) throw new EndOfStreamException("the reply ends inside its result");
        return payload;
    }

    static void WriteFrame(Stream body, byte type, ReadOnlySpan<byte> payload)
    {
        Span<byte> header = stackalloc byte[5];
        header[0] = type;
        BinaryPrimitives.WriteUInt32BigEndian(header[1..], (uint)payload.Length);
        body.Write(header);
        body.Write(payload);
    }


    /// <summary>Whether the stream filled the whole buffer before it ended.</summary>
    static bool ReadFull(Stream s, Span<byte> buffer) => s.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false) == buffer.Length;

    /// <summary>Sends what is written as data frames; never closes the reply.</summary>
    sealed class DataFrames(Stream body) : WriteOnlyStream
    {
        public override void Write(ReadOnlySpan<byte> data)
        {
            while (data.Length > 0)
            {
                int n = Math.Min(data.Length, MaxDataFrame);
                WriteFrame(body, DataFrame, data[..n]);
                data = data[n..];
            }
        }

        public override void Flush() => body.Flush();
    }
}
