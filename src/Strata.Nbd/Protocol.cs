namespace Strata.Nbd;

/// <summary>The NBD protocol's numbers (NetworkBlockDevice/nbd doc/proto.md); every integer on the wire is big-endian.</summary>
static class Nbd
{
    public const ulong NbdMagic = 0x4e42444d41474943; // "NBDMAGIC"
    public const ulong IHaveOpt = 0x49484156454F5054; // "IHAVEOPT"
    public const ulong OptReplyMagic = 0x3e889045565a9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;

    // handshake flags (server) and client flags
    public const ushort FlagFixedNewstyle = 1, FlagNoZeroes = 2;

    // options
    public const uint OptExportName = 1, OptAbort = 2, OptList = 3, OptStartTls = 5, OptInfo = 6, OptGo = 7,
        OptStructuredReply = 8, OptListMetaContext = 9, OptSetMetaContext = 10;

    // option replies
    public const uint RepAck = 1, RepServer = 2, RepInfo = 3, RepMetaContext = 4;
    public const uint StructuredReplyMagic = 0x668e33ef;
    public const ushort ReplyFlagDone = 1;
    public const ushort ChunkNone = 0, ChunkOffsetData = 1, ChunkOffsetHole = 2, ChunkBlockStatus = 5, ChunkError = 0x8001;
    public const ushort CmdFlagDf = 1 << 2, CmdFlagReqOne = 1 << 3;
    public const uint StateHole = 1, StateZero = 2;
    public const string BaseAllocation = "base:allocation";
    public const uint BaseAllocationId = 1;
    public const uint RepErrUnsup = 0x8000_0001, RepErrPolicy = 0x8000_0002, RepErrInvalid = 0x8000_0003, RepErrUnknown = 0x8000_0006;

    // info types
    public const ushort InfoExport = 0, InfoName = 1, InfoDescription = 2, InfoBlockSize = 3;

    // transmission flags
    public const ushort TxHasFlags = 1 << 0, TxReadOnly = 1 << 1, TxSendFlush = 1 << 2, TxSendFua = 1 << 3, TxSendTrim = 1 << 5,
        TxSendWriteZeroes = 1 << 6, TxCanMultiConn = 1 << 8, TxSendCache = 1 << 10, TxSendFastZero = 1 << 11;

    // commands and their flags
    public const ushort CmdRead = 0, CmdWrite = 1, CmdDisc = 2, CmdFlush = 3, CmdTrim = 4, CmdCache = 5, CmdWriteZeroes = 6, CmdBlockStatus = 7;
    public const ushort CmdFlagFua = 1 << 0, CmdFlagNoHole = 1 << 1, CmdFlagFastZero = 1 << 4;

    // errors (errno values the protocol names)
    public const uint EPERM = 1, EIO = 5, ENOMEM = 12, EINVAL = 22, ENOSPC = 28, EOVERFLOW = 75, ENOTSUP = 95, ESHUTDOWN = 108;

    /// <summary>The largest request payload accepted (and advertised as the maximum block size).</summary>
    public const int MaxPayload = 32 << 20;
}
