// A throwaway certificate authority for test registries, made with .NET's CertificateRequest (no openssl).
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Strata.Integration.Tests;

/// <summary>A self-signed ECDSA P-256 certificate authority, valid from an hour ago for a day, that signs the certificates a
/// test registry needs: a TLS server certificate for 127.0.0.1, ::1 and localhost, and a token signing certificate. Every
/// certificate it returns carries its private key.</summary>
sealed class RegistryCertificates : IDisposable
{
    readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public RegistryCertificates(string name)
    {
        var request = new CertificateRequest($"CN={name} test CA", _key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        Authority = request.CreateSelfSigned(NotBefore, NotAfter);
    }

    // an hour back: the registry and the issuer may read a clock a little behind ours
    static DateTimeOffset NotBefore => DateTimeOffset.UtcNow.AddHours(-1);
    static DateTimeOffset NotAfter => DateTimeOffset.UtcNow.AddDays(1);

    public X509Certificate2 Authority { get; }

    /// <summary>The authority's certificate as PEM (what ca.crt and a registry's rootcertbundle hold).</summary>
    public string AuthorityPem => Authority.ExportCertificatePem();

    /// <summary>A server certificate for 127.0.0.1, ::1 (IP SANs) and localhost.</summary>
    public X509Certificate2 IssueServer()
    {
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddIpAddress(IPAddress.IPv6Loopback);
        san.AddDnsName("localhost");
        return Issue("CN=127.0.0.1", X509KeyUsageFlags.DigitalSignature, [new Oid("1.3.6.1.5.5.7.3.1")], san.Build());
    }

    /// <summary>A certificate whose key signs registry tokens (the leaf of a token's x5c chain).</summary>
    public X509Certificate2 IssueSigner(string name) => Issue($"CN={name}", X509KeyUsageFlags.DigitalSignature, [], null);

    X509Certificate2 Issue(string subject, X509KeyUsageFlags usage, Oid[] extendedUsages, X509Extension? san)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(usage, true));
        if (extendedUsages.Length > 0) request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([.. extendedUsages], false));
        if (san is not null) request.CertificateExtensions.Add(san);
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Authority, true, false));
        byte[] serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        // ends with its authority: a notAfter taken from the clock again may fall a second after the CA's, which is refused
        using var certificate = request.Create(Authority, NotBefore, new DateTimeOffset(Authority.NotAfter), serial);
        return certificate.CopyWithPrivateKey(key);
    }

    /// <summary>Writes a certificate as PEM to <paramref name="certificatePath"/> and its private key as PKCS#8 PEM to
    /// <paramref name="keyPath"/>, as Go's tls.LoadX509KeyPair reads them.</summary>
    public static void WritePem(X509Certificate2 certificate, string certificatePath, string keyPath)
    {
        File.WriteAllText(certificatePath, certificate.ExportCertificatePem());
        using var key = certificate.GetECDsaPrivateKey() ?? throw new InvalidOperationException($"{certificate.Subject} has no ECDSA private key");
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>Whether a TLS peer's certificate chains to this authority and names the host asked for: the check an
    /// HttpClient's <c>RemoteCertificateValidationCallback</c> makes for a test registry.</summary>
    public bool Trusts(X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch) || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
            return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(Authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var peer = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return chain.Build(peer);
    }

    /// <summary>An HttpClient (no automatic redirects) that trusts this authority only.</summary>
    public HttpClient NewHttpClient(TimeSpan timeout) => new(new SocketsHttpHandler
    {
        AllowAutoRedirect = false,
        SslOptions = { RemoteCertificateValidationCallback = (_, certificate, _, errors) => Trusts(certificate, errors) },
    })
    { Timeout = timeout };

    public void Dispose()
    {
        Authority.Dispose();
        _key.Dispose();
    }
}
