namespace Headlight.Models.Loading;

/// <summary>How token vectors [seq, hidden] become one sentence vector [hidden].</summary>
public enum PoolingMode
{
    /// <summary>The first token's ([CLS]) vector.</summary>
    Cls,

    /// <summary>The mean over non-padding tokens.</summary>
    Mean,

    /// <summary>The element-wise maximum over non-padding tokens.</summary>
    Max,

    /// <summary>The sum over non-padding tokens divided by the square root of their count.</summary>
    MeanSqrtLength,

    /// <summary>The last non-padding token's vector.</summary>
    LastToken,
}
